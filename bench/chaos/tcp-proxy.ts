/**
 * A TCP proxy that stands between agents and the collector and misbehaves on command: it can
 * delay bytes, cut every connection, refuse new ones (a partition), or silently drop traffic
 * (a black hole, where TCP keeps the connection "up" and only keepalives notice).
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

export type ProxyMode = 'pass' | 'partition' | 'blackhole';

export class FaultyTcpProxy {
  private server: Server | undefined;
  private readonly pairs = new Set<[Socket, Socket]>();
  mode: ProxyMode = 'pass';
  /** Added to every chunk in each direction. */
  delayMs = 0;
  port = 0;
  connections = 0;

  constructor(private readonly targetPort: number, private readonly targetHost = '127.0.0.1') {}

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
    const upstream = connect(this.targetPort, this.targetHost);
    const pair: [Socket, Socket] = [client, upstream];
    this.pairs.add(pair);
    const close = (): void => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    this.pipe(client, upstream);
    this.pipe(upstream, client);
  }

  private pipe(from: Socket, to: Socket): void {
    from.on('data', (chunk: Buffer) => {
      if (this.mode === 'blackhole') return;
      if (this.delayMs <= 0) {
        if (!to.destroyed) to.write(chunk);
        return;
      }
      // Order is kept: timers of equal delay fire in the order they were set.
      setTimeout(() => {
        if (!to.destroyed) to.write(chunk);
      }, this.delayMs);
    });
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

  async stop(): Promise<void> {
    this.cutAll();
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}
