/**
 * Model rollout end to end on real parts, in-process on loopback: the cloud (fastify, SQLite,
 * DuckDB), a collector (aedes, spool, desired feed, model cache) and an agent scoring with
 * onnxruntime while a source emits all along.
 *
 * 1. upload → promote to the site → the agent fetches the model from its collector, swaps, keeps
 *    it after its trial, scores with it, and the cloud twin shows it;
 * 2. a damaged copy (the collector's cached file altered after its check) → the agent refuses it
 *    (sha256), says why in its twin, and the running model keeps scoring;
 * 3. a model whose alert rate explodes (same ONNX, alert threshold 0) → automatic rollback,
 *    reported with its figures;
 * 4. `thresholds` live; and across all of it the cloud holds exactly the seqs the agent produced,
 *    each scored, the models in the order they ran.
 * Then signing: an agent with the registry's public key runs a signed model, one with another key
 * refuses it.
 */
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import type { Agent } from '../../agent/agent.js';
import { loadAgentConfig } from '../../agent/config.js';
import { createAgent } from '../../agent/create-agent.js';
import type { Source, SourceContext } from '../../agent/types.js';
import type { Cloud } from '../../cloud/cloud.js';
import { lakehouseRoot } from '../../cloud/config.js';
import type { Collector } from '../../collector/collector.js';
import { duckSql } from '../helpers/cloud.js';
import { MANIFEST, baseModel, variant } from '../helpers/models.js';
import { silent, startCloud, startCollector, tempDir, waitFor } from '../helpers/stack.js';

const DEVICE = 'rollout-1';
const BASE = baseModel().entry;

/** Three smooth metrics, one reading each per tick, until stopped; sample times one second apart. */
class WaveSource implements Source {
  readonly name = 'wave';
  emitted = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly t0 = Date.now() - 86_400_000;
  start(ctx: SourceContext): void {
    this.timer = setInterval(() => {
      const k = this.emitted / 3;
      const out = [0, 1, 2].map((m) => ({ ts: this.t0 + k * 1000, metric: `m${m}`, value: 20 + m + Math.sin(k / 30 + m), unit: 'u' }));
      this.emitted += out.length;
      ctx.emit(out);
    }, 10);
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

interface CloudTwin {
  reported: Record<string, { model?: string; score?: number; alert?: boolean; seq: number }>;
  reportedProperties: {
    versions?: { model?: string };
    modelRollout?: {
      state: string;
      active: string;
      desired?: string;
      reason?: { code: string; message: string };
      trial?: Record<string, number>;
    };
    errors?: Record<string, { code: string; message: string }>;
    applied?: Record<string, unknown>;
  };
  desired: Record<string, unknown>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function api(method: string, url: string, body?: unknown): Promise<{ status: number; body: any }> {
  const r = await request(url, {
    method: method as 'GET',
    ...(body === undefined ? {} : { headers: { 'content-type': 'application/json', 'if-match': '*' }, body: JSON.stringify(body) }),
  });
  const text = await r.body.text();
  return { status: r.statusCode, body: text ? JSON.parse(text) : undefined };
}

const twinOf = async (cloud: Cloud, device = DEVICE): Promise<CloudTwin | undefined> => {
  const r = await api('GET', `${cloud.url}/v1/twins/${device}`);
  return r.status === 200 ? (r.body as CloudTwin) : undefined;
};

async function upload(cloud: Cloud, body: object): Promise<void> {
  const r = await api('POST', `${cloud.url}/v1/models`, body);
  if (r.status !== 201) throw new Error(`upload: ${r.status} ${JSON.stringify(r.body)}`);
}

async function promote(cloud: Cloud, version: string, target: object): Promise<number> {
  const r = await api('POST', `${cloud.url}/v1/models/forecaster/${version}/promote`, target);
  if (r.status !== 201) throw new Error(`promote: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.promotion.id as number;
}

async function startAgent(dir: string, mqttPort: number, source: Source, scoring: object = {}, device = DEVICE): Promise<Agent> {
  const cfg = loadAgentConfig(
    undefined,
    {
      deviceId: device,
      stateDir: join(dir, device),
      uplink: { url: `mqtt://127.0.0.1:${mqttPort}`, backoff: { initialMs: 50, maxMs: 300 } },
      outbox: { flushIntervalMs: 10 },
      admin: { enabled: false },
      twin: { reportIntervalMs: 200, requestTimeoutMs: 2000 },
      scoring: {
        enabled: true,
        manifestFile: MANIFEST,
        ...scoring,
        rollout: {
          minReadings: 300,
          trialReadings: 600,
          retry: { initialMs: 200, maxMs: 1000 },
          ...(scoring as { rollout?: object }).rollout,
        },
      },
    },
    {},
  );
  const agent = await createAgent(cfg, { log: silent(), sources: [source] });
  await agent.start();
  return agent;
}

function stack(dir: string, cloudOverrides: object = {}): Promise<{ cloud: Cloud; collector: Collector }> {
  return (async () => {
    const cloud = await startCloud(join(dir, 'cloud'), {
      models: { reconcileIntervalMs: 200 },
      lakehouse: { flushIntervalMs: 200 },
      ...cloudOverrides,
    });
    const collector = await startCollector(join(dir, 'collector'), cloud.url, 0, {
      twin: { desiredPollMs: 100, backoff: { initialMs: 50, maxMs: 300 } },
      models: { pollMs: 200, backoff: { initialMs: 50, maxMs: 300 } },
    });
    return { cloud, collector };
  })();
}

t.test('upload → promote → swap; a damaged copy is refused; an exploding model is rolled back; no reading lost', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const { cloud, collector } = await stack(dir);
  t.teardown(() => cloud.stop());
  t.teardown(() => collector.stop());
  const source = new WaveSource();
  const agent = await startAgent(dir, collector.mqttPort, source);
  let stopped = false;
  t.teardown(() => (stopped ? undefined : agent.stop()));

  await waitFor(
    async () => (await twinOf(cloud))?.reportedProperties.versions?.model === BASE.version,
    20_000,
    'the twin to report the configured model',
  );
  t.equal(agent.twin!.state.applied['model'], undefined);

  // 1. A new version, promoted to the site.
  await upload(cloud, variant('forecaster-1.1.0'));
  const sitePromotion = await promote(cloud, 'forecaster-1.1.0', { site: 'site-1' });
  await waitFor(
    async () => (await twinOf(cloud))?.reportedProperties.modelRollout?.state === 'accepted',
    20_000,
    'the agent to run 1.1.0 through its trial',
  );
  t.equal(activeModel(agent), 'forecaster-1.1.0', 'the agent scores with 1.1.0');
  let twin = await waitTwin(
    cloud,
    (tw) => tw.reportedProperties.versions?.model === 'forecaster-1.1.0' && tw.reported['m0']?.model === 'forecaster-1.1.0',
    'the cloud twin to show 1.1.0 active and scoring',
  );
  t.equal(twin.reportedProperties.modelRollout?.active, 'forecaster-1.1.0');
  t.ok(typeof twin.reported['m0']?.score === 'number', 'readings carry a score');
  t.ok(collector.models!.cache.files.get('forecaster', 'forecaster-1.1.0'), 'the collector cached the model');
  t.equal(await metric(collector, 'edgetwin_models_fetches_total', { result: 'ok' }), 1, 'the collector fetched it from the cloud once');

  // 2. A damaged copy: promoted to a device group, cached by the collector, then altered on its disk.
  await upload(cloud, variant('forecaster-1.2.0'));
  const canary = await promote(cloud, 'forecaster-1.2.0', { site: 'site-1', tag: 'ring:canary' });
  await waitFor(
    () => collector.models!.cache.files.get('forecaster', 'forecaster-1.2.0') !== undefined,
    10_000,
    'the collector to prefetch 1.2.0',
  );
  const cached = collector.models!.cache.files.filePath('forecaster', 'forecaster-1.2.0');
  const bytes = readFileSync(cached);
  bytes[bytes.length >> 1] ^= 0xff;
  writeFileSync(cached, bytes);
  t.equal((await api('PATCH', `${cloud.url}/v1/twins/${DEVICE}`, { tags: { ring: 'canary' } })).status, 200);
  twin = await waitTwin(
    cloud,
    (tw) => tw.reportedProperties.errors?.['model']?.code === 'EDGETWIN_ERR_MODEL',
    'the agent to refuse the damaged model',
  );
  t.match(twin.reportedProperties.errors!['model']!.message, /sha256/, 'it says the digest did not match');
  t.equal(twin.reportedProperties.modelRollout?.state, 'retrying');
  t.equal((twin.desired['model'] as { version: string }).version, 'forecaster-1.2.0', 'desired names the damaged one');
  const seqBefore = twin.reported['m0']!.seq;
  twin = await waitTwin(cloud, (tw) => tw.reported['m0']!.seq > seqBefore + 30, 'more readings');
  t.equal(twin.reported['m0']!.model, 'forecaster-1.1.0', 'the old model keeps scoring');
  t.equal(twin.reportedProperties.versions?.model, 'forecaster-1.1.0');
  t.equal((await api('DELETE', `${cloud.url}/v1/models/promotions/${canary}`)).status, 200);
  twin = await waitTwin(
    cloud,
    (tw) => tw.reportedProperties.modelRollout?.state === 'accepted' && tw.reportedProperties.errors?.['model'] === undefined,
    'the withdrawal to clear the error',
  );

  // 3. A model whose alert rate explodes.
  await upload(cloud, variant('forecaster-1.3.0', { thresholds: { alert: 0 } }));
  const explode = await promote(cloud, 'forecaster-1.3.0', { site: 'site-1' });
  twin = await waitTwin(
    cloud,
    (tw) => tw.reportedProperties.modelRollout?.state === 'rolled_back' && tw.reportedProperties.errors?.['model'] !== undefined,
    'the automatic rollback',
  );
  const rb = twin.reportedProperties.modelRollout!;
  t.equal(rb.active, 'forecaster-1.1.0', 'back on the previous model');
  t.equal(rb.reason?.code, 'EDGETWIN_ERR_MODEL_ROLLED_BACK');
  t.match(
    rb.reason?.message,
    /forecaster-1\.3\.0 rolled back to forecaster-1\.1\.0: 10000 alerts per 10k readings/,
    'the reason has the figures',
  );
  t.equal(
    twin.reportedProperties.errors?.['model']?.code,
    'EDGETWIN_ERR_MODEL_ROLLED_BACK',
    'and errors.model says why desired is not running',
  );
  twin = await waitTwin(
    cloud,
    (tw) => tw.reported['m0']?.model === 'forecaster-1.1.0' && tw.reported['m0'].seq > seqBefore + 400,
    'scoring with 1.1.0 again',
  );
  t.equal(activeModel(agent), 'forecaster-1.1.0');
  const from = Date.now() - 2 * 86_400_000;
  await waitFor(
    async () => {
      const a = await api('GET', `${cloud.url}/v1/anomalies?device=${DEVICE}&from=${from}&limit=1000`);
      return a.status === 200 && a.body.items.some((x: { model: string }) => x.model === 'forecaster-1.3.0');
    },
    20_000,
    "the exploding model's alerts to reach the cloud as anomalies",
  );

  // 4. The alert threshold, live.
  await api('PATCH', `${cloud.url}/v1/twins/${DEVICE}/desired`, { thresholds: { alert: 0 } });
  twin = await waitTwin(
    cloud,
    // Readings and reported properties reach the cloud by different paths (telemetry vs the twin
    // topic), so the alerting readings may land before the agent's report of what it applied.
    (tw) =>
      tw.reported['m0']?.alert === true && tw.reported['m1']?.alert === true && tw.reportedProperties.applied?.['thresholds'] !== undefined,
    'every reading to alert at threshold 0, and the agent to report it applied',
  );
  t.same(twin.reportedProperties.applied?.['thresholds'], { alert: 0 });
  t.equal(
    twin.reportedProperties.modelRollout?.state,
    'rolled_back',
    'a threshold change is not a model trial: no rollback of the accepted model',
  );
  await api('PATCH', `${cloud.url}/v1/twins/${DEVICE}/desired`, { thresholds: { alert: 7 } });
  twin = await waitTwin(
    cloud,
    (tw) => tw.reportedProperties.errors?.['thresholds']?.code === 'EDGETWIN_ERR_CONFIG',
    'a bad threshold to be refused',
  );
  await api('PATCH', `${cloud.url}/v1/twins/${DEVICE}/desired`, { thresholds: null });
  await waitTwin(cloud, (tw) => tw.reported['m0']?.alert !== true, "alerts to stop at the model's own threshold");

  // Withdrawing: the older promotion applies again, then none (the configured model, no trial).
  t.equal((await api('DELETE', `${cloud.url}/v1/models/promotions/${explode}`)).status, 200);
  await waitTwin(
    cloud,
    (tw) => tw.reportedProperties.modelRollout?.state === 'accepted' && tw.reportedProperties.errors?.['model'] === undefined,
    'desired 1.1.0 again, which runs',
  );
  t.equal((await api('DELETE', `${cloud.url}/v1/models/promotions/${sitePromotion}`)).status, 200);
  await waitTwin(
    cloud,
    (tw) => tw.reportedProperties.modelRollout?.state === 'configured' && tw.reported['m0']?.model === BASE.version,
    'the configured model back',
  );

  // Every reading, once, scored, models in the order they ran.
  source.stop();
  await agent.flush();
  const last = agent.identity.nextSeq - 1;
  const epoch = agent.identity.epoch;
  await waitTwin(cloud, (tw) => Object.values(tw.reported).some((r) => r.seq === last), 'the last reading in the cloud');
  await agent.stop();
  stopped = true;
  await cloud.flush();
  const ids = await cloud.identities(DEVICE);
  t.equal(ids.length, last, `the cloud holds ${last} readings`);
  t.ok(
    ids.every((r, i) => r.epoch === epoch && r.seq === i + 1),
    'exactly seqs 1..last of the one epoch: none lost, none twice',
  );
  t.equal(source.emitted, last, 'every reading the source emitted');
  const silver = join(lakehouseRoot(cloud.cfg), 'silver');
  const rows = await duckSql(
    `SELECT seq, model, score FROM read_parquet('${silver}/**/*.parquet', hive_partitioning = false) WHERE device = '${DEVICE}' ORDER BY seq`,
  );
  t.ok(
    rows.every((r) => typeof r['score'] === 'number' && r['model']),
    'every reading was scored',
  );
  const runs: string[] = [];
  for (const r of rows) if (runs[runs.length - 1] !== r['model']) runs.push(String(r['model']));
  t.same(
    runs,
    [BASE.version, 'forecaster-1.1.0', 'forecaster-1.3.0', 'forecaster-1.1.0', BASE.version],
    'each swap between two readings, in order: configured, 1.1.0, 1.3.0 (rolled back), 1.1.0, configured again after the withdrawal',
  );
});

t.test("signed models: run with the registry's public key, refused with another", async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const keys = generateKeyPairSync('ed25519');
  const other = generateKeyPairSync('ed25519');
  const signing = join(dir, 'signing.pem');
  writeFileSync(signing, keys.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const [pub, wrong] = [join(dir, 'registry.pub'), join(dir, 'other.pub')];
  writeFileSync(pub, keys.publicKey.export({ type: 'spki', format: 'pem' }));
  writeFileSync(wrong, other.publicKey.export({ type: 'spki', format: 'pem' }));
  const { cloud, collector } = await stack(dir, { models: { reconcileIntervalMs: 200, signingKeyFile: signing } });
  t.teardown(() => cloud.stop());
  t.teardown(() => collector.stop());
  const good = await startAgent(dir, collector.mqttPort, new WaveSource(), { rollout: { publicKeyFile: pub } }, 'signed-ok');
  t.teardown(() => good.stop());
  const bad = await startAgent(dir, collector.mqttPort, new WaveSource(), { rollout: { publicKeyFile: wrong } }, 'signed-other-key');
  t.teardown(() => bad.stop());
  await waitFor(
    async () => (await twinOf(cloud, 'signed-ok')) !== undefined && (await twinOf(cloud, 'signed-other-key')) !== undefined,
    20_000,
    'both twins',
  );
  // A version that is not the committed model's own (BASE): desired naming the configured model is
  // taken from disk without a download, so no signature would be checked.
  const signed = 'forecaster-9.0.0';
  t.not(signed, BASE.version);
  await upload(cloud, variant(signed));
  await promote(cloud, signed, { site: 'site-1' });
  await waitTwin(cloud, (tw) => tw.reportedProperties.versions?.model === signed, 'the agent with the right key to run it', 'signed-ok');
  const refused = await waitTwin(
    cloud,
    (tw) => tw.reportedProperties.modelRollout?.state === 'refused' && tw.reportedProperties.errors?.['model'] !== undefined,
    'the agent with another key to refuse it',
    'signed-other-key',
  );
  t.equal(refused.reportedProperties.errors?.['model']?.code, 'EDGETWIN_ERR_MODEL');
  t.match(refused.reportedProperties.errors?.['model']?.message, /signature/);
  t.equal(refused.reportedProperties.versions?.model, BASE.version, 'it keeps its model');
});

function activeModel(agent: Agent): string | undefined {
  return (agent.twin!.snapshot()['versions'] as { model?: string }).model;
}

async function waitTwin(cloud: Cloud, ok: (t: CloudTwin) => boolean, what: string, device = DEVICE): Promise<CloudTwin> {
  let twin: CloudTwin | undefined;
  await waitFor(
    async () => {
      twin = await twinOf(cloud, device);
      return twin !== undefined && ok(twin);
    },
    20_000,
    what,
  );
  return twin!;
}

async function metric(c: Collector, name: string, labels: Record<string, string>): Promise<number> {
  const m = await c.registry.getSingleMetric(name)!.get();
  return m.values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((a, v) => a + v.value, 0);
}
