/**
 * A TCP proxy that stands between agents and the collector and misbehaves on command: it can
 * delay bytes, cut every connection, refuse new ones (a partition), or silently drop traffic
 * (a black hole, where TCP keeps the connection "up" and only keepalives notice).
 * Given several targets it is also the load balancer in front of cloud replicas: each new
 * connection goes to the next target in turn, and one whose target refuses the connection (a
 * killed replica) is dialled on to the next, as a platform load balancer retries a connect failure.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

export type ProxyMode = 'pass' | 'partition' | 'blackhole';

export class FaultyTcpProxy {
  private server: Server | undefined;
  private readonly pairs = new Set<[Socket, Socket]>();
  /** Sockets whose bytes a black hole swallowed: their stream has a hole in it. */
  private readonly holed = new Set<Socket>();
  mode: ProxyMode = 'pass';
  /** Added to every chunk in each direction. */
  delayMs = 0;
  port = 0;
  connections = 0;

  private readonly targets: number[];
  private nextTarget = 0;

  constructor(
    targetPort: number | number[],
    private readonly targetHost = '127.0.0.1',
  ) {
    this.targets = Array.isArray(targetPort) ? [...targetPort] : [targetPort];
  }

  async start(port = 0): Promise<number> {
    const server = createServer((client) => this.accept(client));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    return this.port;
  }

  private accept(client: Socket): void {
    if (this.mode === 'partition') {
      client.destroy();
      return;
    }
    this.connections++;
    client.on('error', () => client.destroy()); // a reset while its target is dialled
    this.dial(client, this.targets.length);
  }

  /** Dials the next target; a refused dial moves on to the one after it, `tries` targets in all. */
  private dial(client: Socket, tries: number): void {
    const port = this.targets[this.nextTarget++ % this.targets.length]!;
    const upstream = connect(port, this.targetHost);
    if (this.targets.length > 1) {
      // Nothing is piped until the target answers, so a refused dial loses no byte of the client's.
      const refused = (): void => {
        upstream.destroy();
        if (tries > 1 && !client.destroyed) this.dial(client, tries - 1);
        else client.destroy();
      };
      upstream.once('error', refused);
      upstream.once('connect', () => {
        upstream.off('error', refused);
        this.join(client, upstream);
      });
      return;
    }
    this.join(client, upstream);
  }

  private join(client: Socket, upstream: Socket): void {
    const pair: [Socket, Socket] = [client, upstream];
    this.pairs.add(pair);
    const close = (): void => {
      this.pairs.delete(pair);
      this.holed.delete(client);
      this.holed.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    this.pipe(client, upstream);
    this.pipe(upstream, client);
  }

  private pipe(from: Socket, to: Socket): void {
    // A chunk never overtakes an earlier one, even when delayMs shrinks mid-stream: TCP delays,
    // it does not reorder, and a reordered MQTT stream is a fault no real network makes.
    const queue: { due: number; chunk: Buffer }[] = [];
    let timer: NodeJS.Timeout | undefined;
    const drain = (): void => {
      timer = undefined;
      const now = Date.now();
      while (queue.length > 0 && queue[0]!.due <= now) {
        const { chunk } = queue.shift()!;
        if (!to.destroyed) to.write(chunk);
      }
      if (queue.length > 0) timer = setTimeout(drain, queue[0]!.due - now);
    };
    from.on('data', (chunk: Buffer) => {
      if (this.mode === 'blackhole') {
        this.holed.add(from);
        return;
      }
      if (this.delayMs <= 0 && queue.length === 0) {
        if (!to.destroyed) to.write(chunk);
        return;
      }
      queue.push({ due: Date.now() + Math.max(0, this.delayMs), chunk });
      timer ??= setTimeout(drain, Math.max(0, queue[0]!.due - Date.now()));
    });
    from.once('close', () => {
      if (timer) clearTimeout(timer);
    });
  }

  /**
   * Back to `pass`. Connections that lost bytes to a black hole are reset rather than resumed: a
   * real network that drops packets makes TCP retransmit or give up, it never delivers a stream
   * with a hole in it (which would feed the receiver a forged packet).
   */
  heal(): number {
    this.mode = 'pass';
    let n = 0;
    for (const pair of this.pairs) {
      if (!this.holed.has(pair[0]) && !this.holed.has(pair[1])) continue;
      pair[0].destroy();
      pair[1].destroy();
      this.pairs.delete(pair);
      n++;
    }
    this.holed.clear();
    return n;
  }

  /** Closes every open connection (both sides see a reset). */
  cutAll(): number {
    const n = this.pairs.size;
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
    return n;
  }

  /**
   * Stops listening and cuts every connection: dialling the proxy is refused, as when the host
   * behind it is gone (unlike `partition`, which accepts and then closes, as a load balancer
   * with a dead backend does).
   */
  async down(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    this.cutAll();
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  /** Listens again on the same port after down(). */
  async up(): Promise<void> {
    if (!this.server) await this.start(this.port);
  }

  async stop(): Promise<void> {
    this.cutAll();
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}
