/** Helpers for the collector's own tests: a collector with a device registry, MQTT clients, metrics. */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
// Types only: the collector's modules load when a test first starts one (startRegistryCollector),
// so a test that only needs the MQTT clients does not compile the collector's tree.
import type { Collector, CollectorDeps } from '../../collector/collector.js';
import type { Sink, SinkBatch, SinkWriteResult } from '../../collector/sinks/sink.js';
import { deepMerge } from '../../common/config.js';
import { createSasToken } from '../../common/sas-token.js';
import type { Registry } from '../../common/metrics.js';
import { spliceBatch } from '../../common/wire/record.js';
import type { Test } from 'tap';
import { makePki, type TestPki } from './certs.js';
import { silent } from './stack.js';
import { tempDir } from './util.js';

export const HUB = 'edgetwin.local';

/** A collector on loopback with auth.mode registry, no admin port, fast runner; `overrides` merge over that. */
export async function startRegistryCollector(stateDir: string, overrides: object = {}, deps: CollectorDeps = {}): Promise<Collector> {
  const [{ Collector }, { loadCollectorConfig }] = await Promise.all([
    import('../../collector/collector.js'),
    import('../../collector/config.js'),
  ]);
  const base = {
    stateDir,
    mqtt: { port: 0 },
    auth: { mode: 'registry', revocationPollMs: 100 },
    sinks: { http: { enabled: false } },
    admin: { enabled: false },
    runner: { flushIntervalMs: 5, backoff: { initialMs: 20, maxMs: 200 } },
  };
  const c = new Collector(loadCollectorConfig(undefined, deepMerge(base, overrides), {}), { log: silent(), ...deps });
  await c.start();
  return c;
}

/**
 * A registry collector with only its TLS listener (a fresh test CA) and one SAS device, as Azure's
 * device SDK expects to find IoT Hub; removed and stopped when the test ends.
 */
export async function startSdkCollector(t: Test, device: string): Promise<{ pki: TestPki; collector: Collector; key: string | undefined }> {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const pki = makePki(dir);
  const collector = await startRegistryCollector(`${dir}/collector`, {
    mqtt: { enabled: false, tls: { enabled: true, port: 0, certFile: pki.certFile, keyFile: pki.keyFile } },
  });
  t.teardown(() => collector.stop());
  const { key } = await collector.devices!.add(device, 'sas');
  return { pki, collector, key };
}

export function sasToken(deviceId: string, key: string, ttlS = 3600): string {
  return createSasToken(`${HUB}/devices/${deviceId}`, key, Math.floor(Date.now() / 1000) + ttlS);
}

export interface ConnectResult {
  client: MqttClient;
  /** CONNACK return code when refused. */
  refusedCode?: number;
}

/** Connects once (no reconnects); resolves with the client, or with the CONNACK refusal code. */
export function connectOnce(url: string, opts: IClientOptions): Promise<ConnectResult> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4, ...opts });
    client.once('connect', () => resolve({ client }));
    client.once('error', (err: Error & { code?: number }) => {
      client.end(true);
      if (typeof err.code === 'number') resolve({ client, refusedCode: err.code });
      else reject(err);
    });
    client.once('close', () => {
      if (client.connected) return;
      client.end(true);
      resolve({ client, refusedCode: -1 });
    });
  });
}

export function publishQos1(client: MqttClient, topic: string, payload: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) => client.publish(topic, payload, { qos: 1 }, (err) => (err ? reject(err) : resolve())));
}

/** Resolves when the client's connection closes (or after ms with false). */
export function closed(client: MqttClient, ms = 5000): Promise<boolean> {
  if (client.disconnected || (!client.connected && !client.reconnecting)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    client.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

export function batch(device: string, epoch: number, fromSeq: number, n = 1, metric = 'temperature'): string {
  return spliceBatch(
    device,
    epoch,
    Array.from({ length: n }, (_, i) =>
      JSON.stringify({ seq: fromSeq + i, ts: 1_700_000_000_000 + fromSeq + i, metric, value: fromSeq + i, unit: 'degC' }),
    ),
  );
}

/** The value of one series of a counter or gauge (0 when absent). */
export async function metric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = registry.getSingleMetric(name);
  if (!m) return 0;
  const { values } = await m.get();
  let sum = 0;
  for (const v of values) {
    if (Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want)) sum += v.value;
  }
  return sum;
}

/** Every spooled body, in order (whether or not sinks released them, it reads the table). */
export function spooledBodies(c: Collector): string[] {
  return (c.spool.db.prepare('SELECT body FROM queue ORDER BY id').all() as { body: string }[]).map((r) => r.body);
}

/** A destination that can be switched off: its writes wait until it is back (close() switches it on, so shutdown never hangs). */
export class SwitchSink implements Sink {
  readonly name = 'switch';
  readonly received: string[] = [];
  up = false;
  async connect(): Promise<void> {}
  async write(b: SinkBatch): Promise<SinkWriteResult> {
    // About time: `up` is a plain field the test flips; this write polls it every 20 ms.
    while (!this.up) await new Promise((r) => setTimeout(r, 20));
    for (const m of b.messages) this.received.push(m.payload);
    return {};
  }
  async close(): Promise<void> {
    this.up = true;
  }
}
