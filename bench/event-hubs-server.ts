/**
 * A protocol-level Azure Event Hubs stand-in for tests, on loopback, built on rhea (AMQP 1.0).
 * It speaks just enough for the real `@azure/event-hubs` producer: SASL ANONYMOUS (or over TLS),
 * CBS `put-token` on `$cbs` (SAS tokens are verified against the key; JWTs against an expected
 * value), management `READ` of the hub and its partitions on `$management`, sender links to the
 * hub or `hub/Partitions/N` with a max message size, and batched messages (format 0x80013700)
 * whose data sections are decoded into the events they carry, and consumer links (the
 * `EventHubConsumerClient`) that read a partition from a position, each event stamped with the time
 * it arrived (`x-opt-enqueued-time`) and, as the service does for `trackLastEnqueuedEventProperties`,
 * the partition's last enqueued event (delivery annotations): so consumer lag is measurable here.
 * Not Azure: see docs/benchmarks.md and docs/architecture.md. Tests import it through
 * test/helpers/event-hubs-server.ts; it lives in bench/ for the alert drill (dist/ has no test/).
 */
import { createHmac } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import rhea from 'rhea';

const BATCH_FORMAT = 0x80013700;

export interface ReceivedEvent {
  /** `x-opt-partition-key` of the event (the batch envelope carries it too). */
  partitionKey: string | undefined;
  /** The link's partition when the producer sent to one, else the one the key hashed to. */
  partitionId: string;
  body: Buffer;
  contentType: string | undefined;
  properties: Record<string, unknown>;
  /** When the server took it (the service's enqueued time). */
  enqueuedAt: Date;
}

export interface EventHubsTestServerOptions {
  hubName?: string;
  partitionCount?: number;
  keyName?: string;
  /** Shared access key (the SAS signature is HMAC-SHA256 over its UTF-8 bytes, as in Service Bus). */
  key?: string;
  /** A JWT the server accepts on put-token (type `jwt`), for the Entra ID path. */
  jwt?: string;
  /** AMQPS with this certificate (what the SDK uses with a TokenCredential). */
  tls?: { cert: Buffer; key: Buffer };
  maxMessageSize?: number;
}

function partitionFor(key: string, count: number): string {
  let h = 0;
  for (const c of Buffer.from(key)) h = (h * 31 + c) >>> 0;
  return String(h % count);
}

function sasValid(token: string, keyName: string, key: string, nowS: number): boolean {
  const fields = new URLSearchParams(token.replace(/^SharedAccessSignature /, ''));
  const sr = fields.get('sr');
  const sig = fields.get('sig');
  const se = Number(fields.get('se'));
  if (!sr || !sig || fields.get('skn') !== keyName || !(se > nowS)) return false;
  const expected = createHmac('sha256', key)
    .update(`${encodeURIComponent(sr)}\n${se}`)
    .digest('base64');
  return expected === sig;
}

export class EventHubsTestServer {
  readonly events: ReceivedEvent[] = [];
  /** One entry per AMQP transfer (a batch of events), in arrival order. */
  readonly transfers: { partitionKey: string | undefined; count: number; target: string }[] = [];
  readonly tokens: { type: string; audience: string; accepted: boolean }[] = [];
  readonly management: { type: string; name: string; partition?: string }[] = [];
  /** While set, incoming transfers are rejected with this AMQP error condition. */
  rejectWith: string | undefined;
  private readonly container = rhea.create_container({ id: 'edgetwin-test-eventhubs' });
  private listener: ReturnType<typeof rhea.listen> | undefined;
  private readonly connections = new Set<rhea.Connection>();
  /** Consumer-side links (the SDK's EventHubConsumerClient): the partition each reads and its next event. */
  private readonly consumers = new Set<{ sender: rhea.Sender; partition: string; next: number }>();
  readonly hubName: string;
  readonly keyName: string;
  readonly key: string;
  private readonly partitions: string[];
  private readonly createdAt = new Date('2026-01-01T00:00:00Z');
  port = 0;

  constructor(private readonly opts: EventHubsTestServerOptions = {}) {
    this.hubName = opts.hubName ?? 'telemetry';
    this.keyName = opts.keyName ?? 'send';
    this.key = opts.key ?? 'test-key-0123456789';
    this.partitions = Array.from({ length: opts.partitionCount ?? 4 }, (_, i) => String(i));
  }

  /** A connection string for the SDK: plain AMQP on loopback via `UseDevelopmentEmulator=true`. */
  get connectionString(): string {
    return `Endpoint=sb://127.0.0.1:${this.port};SharedAccessKeyName=${this.keyName};SharedAccessKey=${this.key};EntityPath=${this.hubName};UseDevelopmentEmulator=true`;
  }

  async start(): Promise<this> {
    this.container.sasl_server_mechanisms.enable_anonymous();
    this.container.on('connection_open', (ctx: rhea.EventContext) => {
      this.connections.add(ctx.connection);
      ctx.connection.once('connection_close', () => this.connections.delete(ctx.connection));
      ctx.connection.once('disconnected', () => this.connections.delete(ctx.connection));
    });
    // Replies to $cbs and $management go out on the sender link the client opened for them.
    this.container.on('sender_open', (ctx: rhea.EventContext) => {
      const s = ctx.sender!;
      s.set_source({ address: s.source?.address });
      this.attachConsumer(s);
    });
    this.container.on('receiver_open', (ctx: rhea.EventContext) => {
      const r = ctx.receiver!;
      const address = r.target?.address ?? '';
      r.set_target({ address });
      if (address !== '$cbs' && address !== '$management') {
        (r as unknown as { local: { attach: { max_message_size: number } } }).local.attach.max_message_size =
          this.opts.maxMessageSize ?? 1024 * 1024;
      }
    });
    this.container.on('message', (ctx: rhea.EventContext) => this.onMessage(ctx));
    const listenOpts = this.opts.tls
      ? { port: 0, host: '127.0.0.1', transport: 'tls' as const, key: this.opts.tls.key, cert: this.opts.tls.cert }
      : { port: 0, host: '127.0.0.1' };
    this.listener = this.container.listen(listenOpts);
    await new Promise<void>((resolve, reject) => {
      this.listener!.once('listening', () => resolve());
      this.listener!.once('error', reject);
    });
    this.port = (this.listener.address() as AddressInfo).port;
    return this;
  }

  /** Replies go out on the link whose name is the request's reply_to (the client's receiving link). */
  private reply(ctx: rhea.EventContext, request: rhea.Message, status: number, body?: unknown): void {
    const to = String(request.reply_to ?? '');
    const link = ctx.connection.find_sender((s: rhea.Sender) => s.name === to);
    link?.send({
      correlation_id: request.message_id,
      application_properties: { 'status-code': status, 'status-description': status < 300 ? 'OK' : 'refused' },
      body,
    });
  }

  private onMessage(ctx: rhea.EventContext): void {
    const target = ctx.receiver?.target?.address ?? '';
    // rhea leaves messages of a non-zero format (a batch) undecoded: the raw bytes.
    const raw = ctx.message as unknown;
    const msg = (Buffer.isBuffer(raw) ? rhea.message.decode(raw) : raw) as rhea.Message;
    const props = (msg.application_properties ?? {}) as Record<string, unknown>;
    if (target === '$cbs') {
      const type = String(props['type']);
      const audience = String(props['name']);
      const token = String(msg.body);
      const accepted = type === 'jwt' ? token === this.opts.jwt : sasValid(token, this.keyName, this.key, Date.now() / 1000);
      this.tokens.push({ type, audience, accepted });
      this.reply(ctx, msg, accepted ? 202 : 401);
      return;
    }
    if (target === '$management') {
      const type = String(props['type']);
      const name = String(props['name']);
      if (props['operation'] !== 'READ' || name !== this.hubName) return this.reply(ctx, msg, 404);
      if (type === 'com.microsoft:eventhub') {
        this.management.push({ type, name });
        return this.reply(ctx, msg, 200, {
          name,
          created_at: this.createdAt,
          partition_count: this.partitions.length,
          partition_ids: this.partitions,
        });
      }
      if (type === 'com.microsoft:partition') {
        const partition = String(props['partition']);
        this.management.push({ type, name, partition });
        const count = this.events.filter((e) => e.partitionId === partition).length;
        return this.reply(ctx, msg, 200, {
          name,
          partition,
          begin_sequence_number: 0,
          last_enqueued_sequence_number: count - 1,
          last_enqueued_offset: String(count),
          last_enqueued_time_utc: this.events.findLast((e) => e.partitionId === partition)?.enqueuedAt ?? this.createdAt,
          is_partition_empty: count === 0,
        });
      }
      return this.reply(ctx, msg, 400);
    }
    if (target !== this.hubName && !target.startsWith(`${this.hubName}/Partitions/`)) {
      ctx.delivery?.reject({ condition: 'amqp:not-found', description: `no entity ${target}` });
      return;
    }
    if (this.rejectWith) {
      ctx.delivery?.reject({ condition: this.rejectWith, description: 'test server told to refuse' });
      return;
    }
    const linkPartition = target.startsWith(`${this.hubName}/Partitions/`) ? target.split('/').pop()! : undefined;
    const inner: rhea.Message[] = [];
    const section = msg.body as { typecode?: number; content?: Buffer | Buffer[]; multiple?: boolean };
    if ((ctx.delivery as unknown as { format?: number })?.format === BATCH_FORMAT) {
      const parts = section.multiple ? (section.content as Buffer[]) : [section.content as Buffer];
      for (const p of parts) inner.push(rhea.message.decode(p) as unknown as rhea.Message);
    } else {
      inner.push(msg);
    }
    const envelopeKey = msg.message_annotations?.['x-opt-partition-key'] as string | undefined;
    for (const m of inner) {
      const key = (m.message_annotations?.['x-opt-partition-key'] as string | undefined) ?? envelopeKey;
      const body = m.body as { content?: Buffer } | Buffer | string;
      this.events.push({
        partitionKey: key,
        partitionId: linkPartition ?? partitionFor(key ?? '', this.partitions.length),
        body: Buffer.isBuffer(body)
          ? body
          : typeof body === 'string'
            ? Buffer.from(body)
            : Buffer.from((body as { content: Buffer }).content),
        contentType: m.content_type,
        properties: (m.application_properties ?? {}) as Record<string, unknown>,
        enqueuedAt: new Date(),
      });
    }
    this.transfers.push({ partitionKey: envelopeKey, count: inner.length, target });
    for (const c of this.consumers) this.feed(c);
    ctx.delivery?.accept();
  }

  /**
   * A receiver link on `<hub>/ConsumerGroups/<group>/Partitions/<n>` reads that partition from the
   * position in its selector filter (offset or sequence number, as the consumer client sends it).
   * Sequence numbers are positions in the partition; offsets are their decimal strings.
   */
  private attachConsumer(s: rhea.Sender): void {
    const m = /^(.+)\/ConsumerGroups\/[^/]+\/Partitions\/(\d+)$/.exec(String(s.source?.address ?? ''));
    if (!m || m[1] !== this.hubName) return;
    const filter = JSON.stringify((s.source as { filter?: unknown })?.filter ?? '');
    const f = /x-opt-(offset|sequence-number|enqueued-time)\s*(>=|>)\s*'?(-?\d+)'?/.exec(filter);
    let next = 0;
    if (f && f[1] !== 'enqueued-time') next = Number(f[3]) + (f[2] === '>' ? 1 : 0);
    const c = { sender: s, partition: m[2]!, next: Math.max(0, next) };
    this.consumers.add(c);
    s.on('sendable', () => this.feed(c));
    s.once('sender_close', () => this.consumers.delete(c));
    s.connection.once('disconnected', () => this.consumers.delete(c));
    this.feed(c);
  }

  private feed(c: { sender: rhea.Sender; partition: string; next: number }): void {
    const list = this.events.filter((e) => e.partitionId === c.partition);
    const newest = list[list.length - 1];
    while (c.next < list.length && c.sender.sendable()) {
      const e = list[c.next]!;
      c.sender.send({
        // Runtime metrics (the SDK asks with the receiver-runtime-metric capability): the consumer's
        // lastEnqueuedEventProperties, from which it measures how far behind it is.
        delivery_annotations: {
          last_enqueued_sequence_number: list.length - 1,
          last_enqueued_offset: String(list.length - 1),
          last_enqueued_time_utc: newest!.enqueuedAt,
          runtime_info_retrieval_time_utc: new Date(),
        },
        body: rhea.message.data_section(e.body),
        content_type: e.contentType,
        application_properties: e.properties,
        message_annotations: {
          'x-opt-sequence-number': c.next,
          'x-opt-offset': String(c.next),
          'x-opt-enqueued-time': e.enqueuedAt,
          ...(e.partitionKey === undefined ? {} : { 'x-opt-partition-key': e.partitionKey }),
        },
      });
      c.next++;
    }
  }

  /** Drops every client connection (a network blip). */
  dropConnections(): void {
    for (const c of this.connections) (c as unknown as { socket?: { destroy(): void } }).socket?.destroy();
  }

  async close(): Promise<void> {
    for (const c of this.connections) c.close();
    await new Promise<void>((resolve) => this.listener?.close(() => resolve()) ?? resolve());
  }
}
