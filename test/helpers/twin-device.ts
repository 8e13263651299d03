/**
 * A device that speaks IoT Hub's twin protocol by hand over a raw mqtt.js connection, for tests
 * that need to see exactly what goes over the wire (and to misbehave on purpose).
 */
import mqtt, { type MqttClient } from 'mqtt';
import { parseTwinTopic, twinTopics } from '../../common/wire/twin-protocol.js';
import { waitFor } from './util.js';

export interface Received {
  topic: string;
  body: string;
}

export class RawTwinDevice {
  readonly received: Received[] = [];
  closed = false;
  private rid = 1;

  private constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload) => this.received.push({ topic, body: payload.toString('utf8') }));
    client.on('close', () => (this.closed = true));
    // Refusals end in a reset connection; the tests look at `closed`.
    client.on('error', () => undefined);
  }

  static async connect(port: number, clientId: string, subscribe = true): Promise<RawTwinDevice> {
    const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId, username: clientId, reconnectPeriod: 0, clean: true });
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    const d = new RawTwinDevice(client);
    if (subscribe) await client.subscribeAsync([twinTopics.responses, twinTopics.desiredPatches], { qos: 0 });
    return d;
  }

  /** Publishes a request and waits for the reply with its $rid. */
  async request(
    topicFor: (rid: string) => string,
    body: string | Buffer,
    timeoutMs = 5000,
  ): Promise<{ status: number; version: number | undefined; body: string }> {
    const rid = `r${this.rid++}`;
    await this.client.publishAsync(topicFor(rid), body, { qos: 0 });
    let reply: Received | undefined;
    await waitFor(
      () => {
        reply = this.received.find((m) => {
          const t = parseTwinTopic(m.topic);
          return t.kind === 'response' && t.rid === rid;
        });
        return reply !== undefined;
      },
      timeoutMs,
      `twin reply ${rid}`,
    );
    const t = parseTwinTopic(reply!.topic) as { status: number; version: number | undefined };
    return { status: t.status, version: t.version, body: reply!.body };
  }

  get(): Promise<{ status: number; version: number | undefined; body: string }> {
    return this.request((rid) => twinTopics.get(rid), '');
  }

  patchReported(patch: unknown): Promise<{ status: number; version: number | undefined; body: string }> {
    return this.request((rid) => twinTopics.patchReported(rid), typeof patch === 'string' ? patch : JSON.stringify(patch));
  }

  desiredPatches(): { version: number | undefined; body: Record<string, unknown> }[] {
    return this.received
      .filter((m) => parseTwinTopic(m.topic).kind === 'desired')
      .map((m) => ({
        version: (parseTwinTopic(m.topic) as { version: number | undefined }).version,
        body: JSON.parse(m.body) as Record<string, unknown>,
      }));
  }

  async end(): Promise<void> {
    await this.client.endAsync(true);
  }
}
