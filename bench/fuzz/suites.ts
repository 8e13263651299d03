/**
 * The three fuzz suites, each against real daemons it starts and stops: MQTT against the
 * collector, HTTP against the cloud, bad input against the agent's sources. Each returns its
 * figures, including the ones that must be zero (crashes, good data lost, unknown error codes,
 * rule-breaking answers). `test/fuzz-*.test.ts` run them small; `npm run fuzz` runs them large.
 */
import { join } from 'node:path';
import { request } from 'undici';
import mqtt from 'mqtt';
import { ErrorCodes } from '../../common/errors.js';
import { spliceBatch, topics } from '../../common/wire/record.js';
import { rng } from '../chaos/rng.js';
import { metricSum } from '../chaos/peaks.js';
import { LakeChecker } from '../chaos/verify.js';
import { EvilModbusServer, fuzzAgentHttp, writeCsv, writeJsonLines } from './agent-inputs.js';
import { ERROR_CODES, FuzzStack, GoodIngestClient, GoodMqttDevice } from './harness.js';
import { fuzzHttp } from './http.js';
import { fuzzMqtt, lorisClosedWithin } from './mqtt.js';

export interface Scale {
  /** 1 for npm test; larger for `npm run fuzz`. */
  factor: number;
  /** How long to watch fresh slow-loris sockets for the collector's CONNECT timeout (30 s); 0 skips it. */
  lorisWaitMs: number;
}

export interface Common {
  crashes: number;
  good_acked: number;
  good_stored: number;
  good_lost: number;
  unknown_codes: string[];
  fresh_client_ok: boolean;
}

const MAX_PAYLOAD = 16 * 1024;

function unknown(codes: Iterable<string>): string[] {
  return [...codes].filter((c) => !ERROR_CODES.has(c));
}

export async function mqttSuite(dir: string, seed: number, s: Scale): Promise<Common & Record<string, unknown>> {
  const stack = new FuzzStack({ dir, overrides: { collector: { mqtt: { maxPayloadBytes: MAX_PAYLOAD } } } });
  try {
    await stack.start();
    const collector = stack.cluster.collectors[0]!;
    const rejected0 = await stack.labels(collector, 'edgetwin_broker_rejected_total', 'code');
    const connErr0 = await stack.metric(collector, 'edgetwin_broker_connection_errors_total');
    const good = new GoodMqttDevice(stack.mqttPort);
    await good.start();
    let badPayloads = 0;
    const f = await fuzzMqtt({
      afterPayloads: async () => {
        badPayloads =
          ((await stack.labels(collector, 'edgetwin_broker_rejected_total', 'code')).get(ErrorCodes.BAD_PAYLOAD) ?? 0) -
          (rejected0.get(ErrorCodes.BAD_PAYLOAD) ?? 0);
      },
      port: stack.mqttPort,
      seed,
      malformedConnections: 100 * s.factor,
      packetsPerConnection: 20,
      payloads: 300 * s.factor,
      oversize: 3 * s.factor,
      maxPayloadBytes: MAX_PAYLOAD,
      slowLoris: 20 * s.factor,
    });
    const lorisClosed = s.lorisWaitMs > 0 ? await lorisClosedWithin(stack.mqttPort, 20 * s.factor, s.lorisWaitMs) : undefined;
    await good.stop();
    // A device that connects after all that is served as usual.
    const fresh = await mqtt.connectAsync(`mqtt://127.0.0.1:${stack.mqttPort}`, {
      clientId: 'fuzz-fresh',
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    await fresh.publishAsync(
      topics.telemetry('fuzz-fresh'),
      spliceBatch('fuzz-fresh', 1, [JSON.stringify({ seq: 1, ts: Date.now(), metric: 'good', value: 1, unit: '1' })]),
      { qos: 1 },
    );
    await fresh.endAsync();
    const stored = await stack.waitStored(good.device, good.acked);
    const rejected = await stack.labels(collector, 'edgetwin_broker_rejected_total', 'code');
    const delta = (code: string): number => (rejected.get(code) ?? 0) - (rejected0.get(code) ?? 0);
    return {
      ...f,
      mqtt_bad_payload_counted: badPayloads,
      mqtt_bad_payload_counted_total: delta(ErrorCodes.BAD_PAYLOAD),
      mqtt_oversize_counted: delta(ErrorCodes.PAYLOAD_TOO_LARGE),
      mqtt_connection_errors_counted: (await stack.metric(collector, 'edgetwin_broker_connection_errors_total')) - connErr0,
      ...(lorisClosed !== undefined ? { mqtt_slowloris_watched: 20 * s.factor, mqtt_slowloris_closed_by_timeout: lorisClosed } : {}),
      crashes: stack.crashes.length,
      good_acked: good.acked,
      good_stored: stored,
      good_lost: Math.max(0, good.acked - stored),
      unknown_codes: unknown(rejected.keys()),
      fresh_client_ok: (await stack.waitStored('fuzz-fresh', 1, 10_000)) === 1 && stack.alive,
    };
  } finally {
    await stack.stop();
  }
}

export async function httpSuite(dir: string, seed: number, s: Scale): Promise<Common & Record<string, unknown>> {
  const bodyLimitBytes = 1024 * 1024;
  const stack = new FuzzStack({ dir, overrides: { cloud: { http: { bodyLimitBytes } } } });
  try {
    await stack.start();
    const cloud = stack.cluster.cloud;
    const t = stack.cluster.tokens;
    const good = new GoodIngestClient(stack.cloudUrl, t.collectors[0]!, stack.site);
    good.start();
    await stack.waitStored(good.device, 1, 10_000);
    const errors0 = await stack.metric(cloud, 'edgetwin_cloud_http_errors_total');
    const f = await fuzzHttp({
      cloudUrl: stack.cloudUrl,
      seed,
      requests: 600 * s.factor,
      bodyLimitBytes,
      tokens: { collector: t.collectors[0]!, operator: t.operator, viewer: t.viewer },
      site: stack.site,
      device: good.device,
    });
    await good.stop();
    const stored = await stack.waitStored(good.device, good.acked);
    const codes = await stack.labels(cloud, 'edgetwin_cloud_http_errors_total', 'code');
    const fresh = await request(`${stack.cloudUrl}/v1/twins/${good.device}`, { headers: { authorization: `Bearer ${t.viewer}` } });
    await fresh.body.text();
    const { http_violation_samples, ...rest } = f;
    return {
      ...rest,
      http_violation_samples,
      http_errors_counted: (await stack.metric(cloud, 'edgetwin_cloud_http_errors_total')) - errors0,
      crashes: stack.crashes.length,
      good_acked: good.acked,
      good_stored: stored,
      good_lost: Math.max(0, good.acked - stored),
      unknown_codes: unknown(codes.keys()),
      fresh_client_ok: fresh.statusCode === 200 && stack.alive,
    };
  } finally {
    await stack.stop();
  }
}

/** `all`: both at once on one agent (what `npm test` runs: one stack instead of two, and a broken source beside healthy ones). */
export type AgentPart = 'inputs' | 'modbus' | 'all';

/** Good readings posted to the agent's HTTP ingest every `everyMs` until stopped: the bystander. */
function goodPoster(url: string, everyMs: number): { stop: () => Promise<number> } {
  let accepted = 0;
  let running = true;
  const loop = (async () => {
    for (let v = 1; running; v++) {
      try {
        const res = await request(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ metric: 'bystander', value: v, unit: '1' }),
        });
        const body = (await res.body.json()) as { accepted?: number };
        if (res.statusCode === 200) accepted += body.accepted ?? 0;
      } catch {
        // not acknowledged: not owed
      }
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return accepted;
    },
  };
}

/**
 * `inputs`: JSON lines and CSV files full of broken records, and broken HTTP ingest requests.
 * `modbus`: a Modbus server answering garbage, exceptions, NaN and infinity. Either way a bystander
 * posts good readings throughout, and every good reading must reach the cloud's silver table.
 */
export async function agentSuite(
  dir: string,
  seed: number,
  s: Scale,
  part: AgentPart = 'inputs',
): Promise<Common & Record<string, unknown>> {
  const r = rng(seed);
  const inputs = part !== 'modbus';
  const jsonl = inputs ? writeJsonLines(join(dir, 'input.jsonl'), r, 1000 * s.factor) : { good: 0, bad: 0 };
  const csv = inputs ? writeCsv(join(dir, 'input.csv'), r, 1000 * s.factor) : { good: 0, bad: 0 };
  const modbus = part !== 'inputs' ? new EvilModbusServer(seed) : undefined;
  await modbus?.start();
  const sources = {
    ...(inputs
      ? {
          jsonLines: { enabled: true, path: join(dir, 'input.jsonl') },
          csvReplay: { enabled: true, file: join(dir, 'input.csv'), speed: 0, timestamps: 'original', progress: 'off' },
        }
      : {}),
    ...(modbus
      ? {
          modbusTcp: {
            enabled: true,
            port: modbus.port,
            timeoutMs: 200,
            pollIntervalMs: 50,
            registers: [
              { metric: 'mb_f', unit: '1', address: 0, type: 'float32' },
              { metric: 'mb_u', unit: '1', address: 10, type: 'uint16' },
            ],
          },
        }
      : {}),
  };
  const stack = new FuzzStack({
    dir: join(dir, 'stack'),
    agents: 1,
    overrides: { agent: { sources: { ...sources, backoff: { initialMs: 50, maxMs: 200 } } } },
  });
  let checker: LakeChecker | undefined;
  try {
    await stack.start();
    const agent = stack.cluster.agents[0]!;
    const device = stack.cluster.deviceIds[0]!;
    const url = stack.cluster.agentIngestUrl(0)!;
    const bystander = goodPoster(url, 20);
    const http = inputs ? await fuzzAgentHttp(url, seed, 300 * s.factor, 1 << 20) : undefined;
    // Let the Modbus source meet enough bad answers.
    while (modbus && (modbus.answers['nan'] ?? 0) + (modbus.answers['inf'] ?? 0) + (modbus.answers['garbage'] ?? 0) < 10 * s.factor)
      await new Promise((res) => setTimeout(res, 100));
    const posted = await bystander.stop();
    // Stop feeding it, then let the agent ship what it holds: its outbox must empty on its own.
    await modbus?.stop();
    for (const until = Date.now() + 30_000; Date.now() < until; await new Promise((res) => setTimeout(res, 200))) {
      if ((await stack.metric(agent, 'edgetwin_outbox_depth_rows')) === 0) break;
    }
    const agentMetrics = await stack.metrics(agent);
    const rejectedBy = (source: string): number =>
      metricSum(
        agentMetrics
          .split('\n')
          .filter((l) => l.includes(`source="${source}"`))
          .join('\n'),
        'edgetwin_agent_rejected_total',
      );
    const agentCodes = [...agentMetrics.matchAll(/^edgetwin_agent_rejected_total\{[^}]*code="([^"]*)"/gm)].map((m) => m[1]!);
    checker = await LakeChecker.open(join(dir, 'stack', 'cloud', 'lakehouse'));
    const want: Record<string, number> = { bystander: posted };
    if (inputs) Object.assign(want, { jl: jsonl.good, csv_a: csv.good, http_good: http!.agent_http_good_accepted });
    let counts: Record<string, number> = {};
    // Until everything owed is in silver, or nothing more has arrived for 5 s (then what is missing is lost).
    for (let last = -1, since = Date.now(); Date.now() - since < 5000; await new Promise((res) => setTimeout(res, 500))) {
      await checker.load();
      counts = Object.fromEntries(
        (await checker.rows(`SELECT metric, count(*) AS n FROM silver WHERE device = '${device}' GROUP BY metric`)).map((x) => [
          String(x['metric']),
          Number(x['n']),
        ]),
      );
      if (Object.entries(want).every(([m, n]) => (counts[m] ?? 0) >= n)) break;
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      if (total !== last) [last, since] = [total, Date.now()];
    }
    const [nonFinite] = await checker.rows(`SELECT count(*) AS n FROM silver WHERE NOT isfinite(value)`);
    const collectorRejected = await stack.labels(stack.cluster.collectors[0]!, 'edgetwin_broker_rejected_total', 'code');
    const good = Object.values(want).reduce((a, b) => a + b, 0);
    const stored = Object.keys(want).reduce((sum, m) => sum + Math.min(counts[m] ?? 0, want[m]!), 0);
    const out: Common & Record<string, unknown> = {
      agent_stored_by_metric: counts,
      agent_non_finite_stored: Number(nonFinite?.['n'] ?? 0),
      agent_batches_refused_by_collector: [...collectorRejected.values()].reduce((a, b) => a + b, 0),
      crashes: stack.crashes.length,
      good_acked: good,
      good_stored: stored,
      good_lost: good - stored,
      unknown_codes: unknown(agentCodes),
      fresh_client_ok: stack.crashes.length === 0 && posted > 0,
      agent_bystander_acked: posted,
    };
    if (inputs) {
      const { agent_http_violation_samples, ...httpRest } = http!;
      Object.assign(out, {
        agent_jsonl_good: jsonl.good,
        agent_jsonl_bad: jsonl.bad,
        agent_jsonl_rejected_counted: rejectedBy('json-lines'),
        agent_csv_good: csv.good,
        agent_csv_bad: csv.bad,
        agent_csv_rejected_counted: rejectedBy('csv-replay'),
        ...httpRest,
        agent_http_violation_samples,
        agent_http_rejected_counted: rejectedBy('http-readings'),
      });
    }
    if (modbus) {
      Object.assign(out, {
        agent_modbus_answers: modbus.answers,
        agent_modbus_readings_stored: (counts['mb_f'] ?? 0) + (counts['mb_u'] ?? 0),
        agent_modbus_rejected_counted: rejectedBy('modbus-tcp'),
        agent_modbus_source_errors: metricSum(
          agentMetrics
            .split('\n')
            .filter((l) => l.includes('source="modbus-tcp"'))
            .join('\n'),
          'edgetwin_agent_source_errors_total',
        ),
      });
    }
    return out;
  } finally {
    checker?.close();
    await stack.stop();
    await modbus?.stop();
  }
}

/** What a suite's figures must show; an empty list means it passed. */
export function fuzzFailures(name: string, f: Common & Record<string, unknown>): string[] {
  const out: string[] = [];
  if (f.crashes) out.push(`${name}: ${f.crashes} daemon crash(es)`);
  if (f.good_lost) out.push(`${name}: ${f.good_lost} good readings lost`);
  if (f.unknown_codes.length) out.push(`${name}: unknown error codes ${f.unknown_codes.join(', ')}`);
  if (!f.fresh_client_ok) out.push(`${name}: a good client was not served afterwards`);
  for (const k of ['http_violations', 'agent_http_violations', 'agent_non_finite_stored', 'agent_batches_refused_by_collector']) {
    if (Number(f[k] ?? 0) !== 0) out.push(`${name}: ${k} = ${String(f[k])}`);
  }
  return out;
}
