/**
 * What every fuzz run stands on: the real daemons as processes (a cloud, a collector and, for the
 * agent-input fuzz, one agent — the ChaosCluster without its proxies' faults), a well-behaved client
 * that keeps sending good data the whole time, and the checks that bad input cost nothing: no
 * daemon exited, the good client's every acknowledged reading is stored, error codes are stable.
 */
import { request } from 'undici';
import mqtt, { type MqttClient } from 'mqtt';
import { ErrorCodes } from '../../common/errors.js';
import { spliceBatch, topics } from '../../common/wire/record.js';
import { ChaosCluster, type ManagedDaemon } from '../chaos/cluster.js';
import { metricSum } from '../chaos/peaks.js';

export const ERROR_CODES: ReadonlySet<string> = new Set(Object.values(ErrorCodes));

export interface StackOptions {
  dir: string;
  agents?: number;
  overrides?: { cloud?: object; collector?: object; agent?: object };
}

export class FuzzStack {
  readonly cluster: ChaosCluster;
  crashes: string[] = [];

  constructor(o: StackOptions) {
    this.cluster = new ChaosCluster({
      dir: o.dir,
      agents: o.agents ?? 0,
      collectors: 1,
      spoolMaxBytes: 64 * 1024 * 1024,
      outboxMaxBytes: 64 * 1024 * 1024,
      logLevel: 'info',
      onCrash: (name, code) => this.crashes.push(`${name} exited (${String(code)})`),
      ...(o.overrides ? { overrides: o.overrides } : {}),
    });
  }

  async start(): Promise<this> {
    await this.cluster.start();
    return this;
  }

  get cloudUrl(): string {
    return this.cluster.cloudUrl;
  }

  get mqttPort(): number {
    return Number(this.cluster.collectors[0]!.info['mqttPort']);
  }

  get site(): string {
    return this.cluster.sites[0]!;
  }

  async metrics(d: ManagedDaemon): Promise<string> {
    const url = d === this.cluster.cloud ? this.cloudUrl : this.cluster.adminUrl(d);
    const r = await request(`${url}/metrics`);
    return r.body.text();
  }

  async metric(d: ManagedDaemon, name: string): Promise<number> {
    return metricSum(await this.metrics(d), name);
  }

  /** Label values of one metric's series, e.g. every `code` counted. */
  async labels(d: ManagedDaemon, name: string, label: string): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const re = new RegExp(`^${name}\\{[^}]*${label}="([^"]*)"[^}]*\\} (\\S+)$`);
    for (const line of (await this.metrics(d)).split('\n')) {
      const m = re.exec(line);
      if (m) out.set(m[1]!, (out.get(m[1]!) ?? 0) + Number(m[2]));
    }
    return out;
  }

  /** Readings the cloud has stored for a device (its twin's count), 0 before the first. */
  async storedReadings(device: string): Promise<number> {
    const r = await request(`${this.cloudUrl}/v1/twins/${encodeURIComponent(device)}`, {
      headers: { authorization: `Bearer ${this.cluster.tokens.viewer}` },
    });
    const body = (await r.body.json()) as { readings?: number };
    return r.statusCode === 200 ? (body.readings ?? 0) : 0;
  }

  /** Waits until the cloud holds `want` readings of the device (or the time is up); returns what it holds. */
  async waitStored(device: string, want: number, timeoutMs = 30_000): Promise<number> {
    const until = Date.now() + timeoutMs;
    let have = await this.storedReadings(device);
    while (have < want && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 250));
      have = await this.storedReadings(device);
    }
    return have;
  }

  /** Every daemon still the one that started (none exited on its own). */
  get alive(): boolean {
    const c = this.cluster;
    return this.crashes.length === 0 && c.cloud.up && c.collectors.every((x) => x.up) && c.agents.every((x) => x.up);
  }

  async stop(): Promise<void> {
    await this.cluster.stop();
  }
}

/** A device that publishes one good reading per message, QoS 1, straight to the collector, all along. */
export class GoodMqttDevice {
  acked = 0;
  failed = 0;
  private client: MqttClient | undefined;
  private running = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly port: number,
    readonly device = 'fuzz-good',
  ) {}

  async start(): Promise<void> {
    const client = mqtt.connect(`mqtt://127.0.0.1:${this.port}`, {
      clientId: this.device,
      clean: false,
      protocolVersion: 4,
      reconnectPeriod: 200,
    });
    this.client = client;
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    this.running = true;
    this.loop = this.run(client);
  }

  private async run(client: MqttClient): Promise<void> {
    for (let seq = 1; this.running; seq++) {
      const body = spliceBatch(this.device, 1, [JSON.stringify({ seq, ts: Date.now(), metric: 'good', value: seq, unit: '1' })]);
      try {
        await client.publishAsync(topics.telemetry(this.device), body, { qos: 1 });
        this.acked++;
      } catch {
        this.failed++;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    await this.client?.endAsync();
  }
}

/** A collector-like client posting good ingest envelopes to the cloud all along. */
export class GoodIngestClient {
  acked = 0;
  failed = 0;
  private running = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly cloudUrl: string,
    private readonly token: string,
    private readonly site: string,
    readonly device = 'fuzz-good-http',
  ) {}

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    for (let b = 0, seq = 1; this.running; b++) {
      const readings = Array.from({ length: 10 }, (_, i) => ({ seq: seq + i, ts: Date.now(), metric: 'good', value: seq + i, unit: '1' }));
      const body = JSON.stringify({
        v: 1,
        batchId: `good-${b}`,
        site: this.site,
        messages: [{ v: 1, device: this.device, epoch: 1, readings }],
      });
      try {
        const r = await request(`${this.cloudUrl}/v1/ingest`, {
          method: 'POST',
          headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' },
          body,
        });
        await r.body.text();
        if (r.statusCode === 200) {
          this.acked += readings.length;
          seq += readings.length;
        } else this.failed++;
      } catch {
        this.failed++;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}
