/**
 * Property-based proof of poison isolation (issue 13), with fast-check against a running stack (a
 * cloud and a collector in this process, on loopback): for every mutated input at every boundary —
 * agent input records, MQTT publishes to the collector, HTTP ingest, and Event Hubs bodies (the
 * consumer's landing: envelopesFromEvents → the ingest pipeline, as its AMQP receiver calls it) —
 * the input is refused with a known EDGETWIN_ERR_* code, or stored, or kept in quarantine; never a
 * 5xx, never an unacknowledged publish. Afterwards the lakehouse writer has nothing pending and no
 * error, and every good reading sent alongside is in silver.
 */
import { join } from 'node:path';
import fc from 'fast-check';
import mqtt from 'mqtt';
import { request } from 'undici';
import { toReading } from '../../agent/sources/reading-input.js';
import { Cloud } from '../../cloud/cloud.js';
import { loadCloudConfig } from '../../cloud/config.js';
import { envelopesFromEvents } from '../../cloud/ingest/event-hubs-consumer.js';
import { Collector } from '../../collector/collector.js';
import { loadCollectorConfig } from '../../collector/config.js';
import { isEdgetwinError } from '../../common/errors.js';
import { createLogger } from '../../common/log.js';
import { spliceBatch, topics } from '../../common/wire/record.js';
import { timestampWindow, unstorableReading } from '../../common/wire/storable.js';
import { ERROR_CODES } from './harness.js';

export interface PropertyFigures {
  runs: number;
  agent_refused: number;
  mqtt_acked: number;
  http_answers: Record<string, number>;
  eventhubs_landed: number;
  quarantined_refused: number;
  lake_quarantined: number;
  lake_pending_batches: number;
  lake_error: string | null;
  good_sent: number;
  good_in_silver: number;
  failures: string[];
}

const DAY = 86_400_000;

/** Values that break one thing or another: lone surrogates, integers past 2^53, wrong types, times far off. */
const poison = (now: number): fc.Arbitrary<unknown> =>
  fc.oneof(
    fc.constantFrom('\ud800', 'a\udfffb', '\ud83d', '', 'x'.repeat(200), 1e20, 2 ** 53, -1, 0.5, null, true, {}, [], 5, now + 400 * DAY),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.double(),
    fc.integer(),
  );

const FIELDS = ['seq', 'ts', 'metric', 'value', 'unit', 'score', 'model', 'alert', 'extra'] as const;

/** A JSON text with one poisoned reading field, or raw damage (truncation, bad bytes, deep nesting, huge numbers). */
function mutated(now: number): fc.Arbitrary<Buffer> {
  const reading = (over: Record<string, unknown>): Record<string, unknown> => ({
    seq: 1,
    ts: now,
    metric: 't',
    value: 1,
    unit: 'C',
    ...over,
  });
  const field = fc
    .record({ f: fc.constantFrom(...FIELDS), v: poison(now) })
    .map(({ f, v }) => Buffer.from(JSON.stringify({ v: 1, device: 'prop-bad', epoch: 1, readings: [reading({ [f]: v })] })));
  const metricMap = fc
    .record({ k: fc.string({ maxLength: 12 }), v: poison(now) })
    .map(({ k, v }) => Buffer.from(JSON.stringify({ [k || 't']: v })));
  const raw = fc.oneof(
    fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
    fc
      .constantFrom('21.5', '[{"t":1}]', 'temperature=21.5', '{"t":1e400}', `{"v":1,"device":"prop-bad","epoch":1e400,"readings":[]}`)
      .map((t) => Buffer.from(t)),
    fc.integer({ min: 1, max: 3000 }).map((d) => Buffer.from(`${'['.repeat(d)}${']'.repeat(d)}`)),
    field.chain((b) => fc.integer({ min: 1, max: Math.max(1, b.length - 1) }).map((cut) => b.subarray(0, cut))),
  );
  return fc.oneof(field, metricMap, raw);
}

export async function propertySuite(dir: string, seed: number, factor: number): Promise<PropertyFigures> {
  const log = createLogger('fuzz', { level: 'silent' });
  const cloud = new Cloud(
    loadCloudConfig(undefined, { stateDir: join(dir, 'cloud'), http: { port: 0 }, lakehouse: { flushIntervalMs: 200 } }, {}),
    { log },
  );
  await cloud.start();
  const collector = new Collector(
    loadCollectorConfig(
      undefined,
      {
        stateDir: join(dir, 'collector'),
        mqtt: { port: 0, maxPayloadBytes: 64 * 1024 },
        sinks: { http: { url: cloud.url } },
        admin: { enabled: false },
        runner: { flushIntervalMs: 10, backoff: { initialMs: 50, maxMs: 500 } },
      },
      {},
    ),
    { log },
  );
  await collector.start();
  const f: PropertyFigures = {
    runs: 0,
    agent_refused: 0,
    mqtt_acked: 0,
    http_answers: {},
    eventhubs_landed: 0,
    quarantined_refused: 0,
    lake_quarantined: 0,
    lake_pending_batches: 0,
    lake_error: null,
    good_sent: 0,
    good_in_silver: 0,
    failures: [],
  };
  const bad = await mqtt.connectAsync(`mqtt://127.0.0.1:${collector.mqttPort}`, { clientId: 'prop-bad', reconnectPeriod: 0 });
  const good = await mqtt.connectAsync(`mqtt://127.0.0.1:${collector.mqttPort}`, { clientId: 'prop-good', reconnectPeriod: 0 });
  const now = Date.now();
  const window = timestampWindow({ notBefore: '2000-01-01T00:00:00Z', maxFutureMs: DAY });
  let goodSeq = 0;
  const goodBatch = (device: string): string => {
    goodSeq++;
    f.good_sent++;
    return spliceBatch(device, 1, [JSON.stringify({ seq: goodSeq, ts: Date.now(), metric: 'good', value: goodSeq, unit: '1' })]);
  };
  const numRuns = 40 * factor;
  const opts = { seed, numRuns, endOnFailure: true };
  try {
    // Agent input records: a valid reading the lake can store, or a refusal with a known code.
    fc.assert(
      fc.property(mutated(now), (b) => {
        f.runs++;
        let item: unknown;
        try {
          item = JSON.parse(b.toString('utf8'));
        } catch {
          return true; // a line that is not JSON is refused before any reading exists
        }
        const rs = Array.isArray((item as { readings?: unknown }).readings) ? (item as { readings: unknown[] }).readings : [item];
        for (const it of rs) {
          try {
            const r = toReading(it, now, 'reading', window);
            if (unstorableReading(r, window, now)) return false;
          } catch (err) {
            f.agent_refused++;
            if (!isEdgetwinError(err) || !ERROR_CODES.has(err.code)) return false;
          }
        }
        return true;
      }),
      opts,
    );
    // MQTT: every publish acknowledged (stored, or kept in quarantine), good batches interleaved.
    await fc.assert(
      fc.asyncProperty(mutated(now), async (b) => {
        f.runs++;
        await bad.publishAsync(topics.telemetry('prop-bad'), b, { qos: 1 });
        f.mqtt_acked++;
        await good.publishAsync(topics.telemetry('prop-good'), goodBatch('prop-good'), { qos: 1 });
        return true;
      }),
      opts,
    );
    // HTTP ingest: never a 5xx; refusals carry known codes; the good message beside them is stored.
    let batch = 0;
    await fc.assert(
      fc.asyncProperty(mutated(now), async (b) => {
        f.runs++;
        const text = b.toString('utf8');
        const body = `{"v":1,"batchId":"prop-${seed}-${batch++}","site":"prop","messages":[${goodBatch('prop-http')},${text}]}`;
        const res = await request(`${cloud.url}/v1/ingest`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
        const answer = (await res.body.json().catch(() => ({}))) as { code?: string; rejected?: { code: string }[]; stored?: number };
        f.http_answers[String(res.statusCode)] = (f.http_answers[String(res.statusCode)] ?? 0) + 1;
        if (res.statusCode >= 500) return false;
        if (res.statusCode >= 400) {
          f.good_sent--; // the whole request was refused (a bad envelope): the good message was not stored either
          return answer.code !== undefined && ERROR_CODES.has(answer.code);
        }
        return (answer.rejected ?? []).every((r) => ERROR_CODES.has(r.code));
      }),
      opts,
    );
    // Event Hubs bodies, landed as the consumer lands them.
    let sequenceNumber = 0;
    await fc.assert(
      fc.asyncProperty(mutated(now), async (b) => {
        f.runs++;
        const events = [
          {
            body: Buffer.from(goodBatch('prop-eh')),
            sequenceNumber: ++sequenceNumber,
            partitionKey: 'prop-eh',
            properties: { 'edgetwin-site': 'prop' },
          },
          { body: b, sequenceNumber: ++sequenceNumber, partitionKey: 'prop-bad', properties: { 'edgetwin-site': 'prop' } },
        ];
        for (const env of envelopesFromEvents('0', events)) {
          try {
            await cloud.pipeline.ingest({ raw: env.raw, body: env.body });
          } catch (err) {
            return isEdgetwinError(err) && ERROR_CODES.has(err.code) && err.code !== 'EDGETWIN_ERR_INTERNAL';
          }
        }
        f.eventhubs_landed++;
        return true;
      }),
      opts,
    );
  } catch (err) {
    f.failures.push(String(err instanceof Error ? err.message : err).slice(0, 2000));
  }
  await bad.endAsync();
  await good.endAsync();
  // Everything the collector acknowledged reaches the cloud; then the writer must end with nothing pending.
  const goodDevices = ['prop-good', 'prop-http', 'prop-eh'];
  const until = Date.now() + 60_000;
  for (;;) {
    await cloud.flush();
    let n = 0;
    for (const d of goodDevices) n += (await cloud.identities(d)).length;
    f.good_in_silver = n;
    if (n >= f.good_sent || Date.now() > until) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  const st = cloud.lake.writer.status();
  f.lake_pending_batches = st.pendingBatches;
  f.lake_error = st.lastError;
  f.lake_quarantined = st.lakeQuarantined;
  const q = await cloud.lake.query.quarantine({ reason: 'refused', from: now - DAY, to: Date.now() + DAY, limit: 100_000 });
  f.quarantined_refused = q.length;
  await collector.stop();
  await cloud.stop();
  if (f.good_in_silver !== f.good_sent) f.failures.push(`good readings lost: ${f.good_sent} sent, ${f.good_in_silver} in silver`);
  if (f.lake_pending_batches !== 0 || f.lake_error !== null)
    f.failures.push(`lake writer: ${f.lake_pending_batches} pending, error ${f.lake_error}`);
  return f;
}
