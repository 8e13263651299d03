/**
 * A device that speaks IoT Hub's direct-method and cloud-to-device topics by hand over a raw
 * mqtt.js connection, for tests that need the wire (and to misbehave on purpose).
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { messageTopics, methodTopics, parseMessageTopic, parseMethodTopic } from '../../common/wire/c2d-protocol.js';

export interface MethodRequest {
  method: string;
  rid: string;
  payload: unknown;
}

export interface ReceivedMessage {
  topic: string;
  body: string;
  properties: Record<string, string>;
}

/** Answers a method request: `[status, payload]`, or undefined to stay silent. */
export type MethodAnswer = (req: MethodRequest) => [number, unknown] | undefined | Promise<[number, unknown] | undefined>;

export class C2dDevice {
  readonly requests: MethodRequest[] = [];
  readonly messages: ReceivedMessage[] = [];
  closed = false;
  /** Set to hold PUBACKs of device-bound messages (the message then stays queued at the collector). */
  holdAcks = false;

  private constructor(
    readonly id: string,
    readonly client: MqttClient,
    private answer: MethodAnswer | undefined,
  ) {
    client.on('close', () => (this.closed = true));
    client.on('error', () => undefined);
    const handle = client.handleMessage.bind(client);
    // mqtt.js sends the PUBACK when handleMessage calls back without an error; with one it sends
    // none and goes on with the next packet (never calling back would stall the connection).
    client.handleMessage = (packet, cb) => {
      if (this.holdAcks && packet.topic.startsWith(messageTopics.prefix(id))) return cb(new Error('ack held by the test'));
      handle(packet, cb);
    };
    client.on('message', (topic, payload) => this.onPublish(topic, payload));
  }

  static async connect(
    port: number,
    id: string,
    opts: { answer?: MethodAnswer; methods?: boolean; messages?: boolean | 0 | 1; holdAcks?: boolean; mqtt?: IClientOptions } = {},
  ): Promise<C2dDevice> {
    const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId: id, username: id, reconnectPeriod: 0, clean: true, ...opts.mqtt });
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    const d = new C2dDevice(id, client, opts.answer);
    d.holdAcks = opts.holdAcks ?? false;
    if (opts.methods !== false) await client.subscribeAsync(methodTopics.requests, { qos: 0 });
    if (opts.messages !== undefined && opts.messages !== false) {
      await client.subscribeAsync(messageTopics.subscription(id), { qos: opts.messages === 0 ? 0 : 1 });
    }
    return d;
  }

  setAnswer(a: MethodAnswer | undefined): void {
    this.answer = a;
  }

  /** Publishes a method answer by hand (any rid, any status). */
  respond(rid: string, status: number, payload: unknown): Promise<unknown> {
    return this.client.publishAsync(methodTopics.response(status, rid), JSON.stringify(payload), { qos: 0 });
  }

  async end(): Promise<void> {
    await this.client.endAsync(true);
  }

  private onPublish(topic: string, payload: Buffer): void {
    const m = parseMethodTopic(topic);
    if (m.kind === 'request') {
      const text = payload.toString('utf8');
      const req = { method: m.method, rid: m.rid ?? '', payload: text.length ? (JSON.parse(text) as unknown) : undefined };
      this.requests.push(req);
      void Promise.resolve(this.answer?.(req)).then((a) => {
        if (a && !this.closed) void this.respond(req.rid, a[0], a[1]);
      });
      return;
    }
    const props = parseMessageTopic(topic);
    if (props) this.messages.push({ topic, body: payload.toString('utf8'), properties: props });
  }
}
