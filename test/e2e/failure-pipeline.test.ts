/**
 * The failure model and drift monitoring end to end on real parts: an agent replaying C-MAPSS-format
 * engines (SQLite outbox, onnxruntime, mqtt.js) → collector (aedes, spool) → cloud (HTTP ingest,
 * SQLite store, DuckDB lakehouse). The twin shows each asset's newest prediction, the history API
 * returns every prediction once, low predictions raise the `rul-low` alert, predictions land in
 * silver as `<asset>.rul` while drift histograms do not, and the drift API judges the agents'
 * histograms against the reference shipped in the model's manifest (synthetic engines are not
 * FD001 engines: their inputs drift).
 */
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { loadAgentConfig } from '../../agent/config.js';
import { createAgent } from '../../agent/create-agent.js';
import { CmapssReplaySource } from '../../agent/sources/cmapss-replay.js';
import { readCmapss } from '../../common/models/cmapss.js';
import { FailureModel } from '../../common/models/failure-model.js';
import { lastWindows } from '../../models/eval/eval-rul.js';
import { failureModel, MANIFEST, writeCmapssFile } from '../helpers/rul.js';
import { silent, startCloud, startCollector, tempDir, waitFor } from '../helpers/stack.js';

const LIVES = [40, 25, 50];

async function json<T>(url: string, init: Parameters<typeof request>[1] = {}): Promise<T> {
  const res = await request(url, init);
  const body = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`${url}: ${res.statusCode} ${body}`);
  return JSON.parse(body) as T;
}

t.test('predictions and drift histograms travel agent → collector → cloud', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const { entry, bytes, path } = failureModel();
  const cloud = await startCloud(join(dir, 'cloud'), { alerts: { evaluateIntervalMs: 200 } });
  t.teardown(() => cloud.stop());
  const collector = await startCollector(join(dir, 'collector'), cloud.url);
  t.teardown(() => collector.stop());
  const file = join(dir, 'engines.txt');
  writeCmapssFile(file, entry, LIVES, 3);
  // The threshold: just above the highest last prediction (eval:rul's code), so every engine's newest prediction alerts.
  const model = await FailureModel.load(entry, path);
  const last = lastWindows(entry, readCmapss(file));
  const threshold = Math.ceil(Math.max(...(await model.predict(last.windows, last.order.length)))) + 1;
  await model.close();
  const cfg = loadAgentConfig(
    undefined,
    {
      deviceId: 'engines-1',
      stateDir: join(dir, 'agent'),
      uplink: { url: `mqtt://127.0.0.1:${collector.mqttPort}`, backoff: { initialMs: 50, maxMs: 300 }, batchMaxDelayMs: 20 },
      outbox: { flushIntervalMs: 10 },
      admin: { enabled: false },
      scoring: { enabled: false },
      sources: { simulator: { enabled: false }, cmapssReplay: { enabled: true, file, startAt: Date.now() - 86_400_000 } },
      assets: { discover: { pattern: '^(engine-[0-9]+)\\.(.+)$' } },
      failure: { manifestFile: MANIFEST, alertBelow: threshold },
      drift: { intervalMs: 1000 },
    },
    {},
  );
  const agent = await createAgent(cfg, { log: silent() });
  t.teardown(() => agent.stop());
  await agent.start();
  const src = agent.supervisors.find((s) => s.name === 'cmapss-replay')!.source as CmapssReplaySource;
  await waitFor(() => src.cycles >= 115, 20_000, 'the replay');

  type Twin = {
    predictions: Record<string, { rulCycles: number; alert: boolean; model: string; unit: string }>;
    reported: Record<string, unknown>;
  };
  await waitFor(
    async () =>
      Object.keys((await json<Twin>(`${cloud.url}/v1/twins/engines-1`).catch(() => ({ predictions: {} }) as Partial<Twin>)).predictions!)
        .length === 3,
    20_000,
    'predictions of the 3 assets in the twin',
  );
  const history = async (asset: string) =>
    (
      await json<{ items: { rulCycles: number; alert: boolean }[] }>(
        `${cloud.url}/v1/twins/engines-1/predictions?asset=${asset}&from=${Date.now() - 7 * 86_400_000}`,
      )
    ).items;
  await waitFor(async () => (await history('engine-3')).length === 50, 20_000, 'every prediction of engine-3');
  const twin = await json<Twin>(`${cloud.url}/v1/twins/engines-1`);
  for (const [i, life] of LIVES.entries()) {
    const items = await history(`engine-${i + 1}`);
    t.equal(items.length, life, `engine-${i + 1}: one prediction per cycle, each stored once`);
    t.equal(twin.predictions[`engine-${i + 1}`]!.rulCycles, items.at(-1)!.rulCycles, 'the twin shows the newest');
    t.ok(
      items.every((p) => p.alert === p.rulCycles < threshold),
      'alert exactly below the threshold',
    );
  }
  t.match(twin.predictions['engine-1'], { model: entry.version, unit: 'cycle' });
  t.notOk(
    Object.keys(twin.reported).some((m) => m.endsWith('.rul')),
    "predictions are not the twin's metrics",
  );

  // Low RUL: the `rul-low` rule fires for the assets whose newest prediction alerts.
  const low = Object.entries(twin.predictions).filter(([, p]) => p.alert);
  t.equal(low.length, 3, 'every newest prediction is below the threshold');
  await waitFor(
    async () =>
      (await json<{ items: { ruleId: string; state: string }[] }>(`${cloud.url}/v1/alerts`)).items.filter(
        (a) => a.ruleId === 'rul-low' && a.state === 'firing',
      ).length === low.length,
    20_000,
    'rul-low alerts',
  );
  t.pass(`${low.length} rul-low alerts firing`);

  // Drift histograms go out once the agent's interval has ended.
  await new Promise((r) => setTimeout(r, 1100)); // About time: the drift interval is wall-clock time
  agent.emit([{ ts: Date.now(), metric: 'tick', value: 1, unit: '1' }]);
  await agent.flush();
  await waitFor(
    async () => (await cloud.store.get<{ n: number }>('SELECT count(*) AS n FROM drift_histograms'))!.n > 0,
    20_000,
    'drift histograms',
  );
  // The registry knows the version: its manifest reference is the drift reference.
  await json(`${cloud.url}/v1/models`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ entry, file: bytes.toString('base64') }),
  });
  const models = await json<{ items: { version: string; kind: string; stage: string }[] }>(`${cloud.url}/v1/models`);
  t.match(
    models.items.find((m) => m.version === entry.version),
    { kind: 'failure', stage: 'candidate' },
  );
  const report = await json<{
    cohorts: { cohort: string; windows: { streams: { stream: string; quantity: string; drift: boolean; n: number }[] }[] }[];
  }>(`${cloud.url}/v1/models/${entry.name}/${entry.version}/drift/evaluate`, { method: 'POST' });
  const streams = report.cohorts.find((c) => c.cohort === 'site:site-1')!.windows.flatMap((w) => w.streams);
  const output = streams.filter((s) => s.stream === 'rul' && s.quantity === 'output');
  t.equal(
    output.reduce((n, s) => n + s.n, 0),
    115,
    'the output histograms count every prediction',
  );
  t.ok(
    streams.some((s) => s.quantity === 'input' && s.drift),
    'synthetic engines drift against the FD001 reference',
  );

  // Silver: predictions as <asset>.rul, no drift histogram.
  await cloud.flush();
  const ids = await cloud.identities('engines-1');
  t.equal(ids.filter((r) => r.metric.endsWith('.rul')).length, 115, 'predictions in silver');
  t.equal(ids.filter((r) => !r.metric.startsWith('engine-') && r.metric !== 'tick').length, 0, 'drift histograms are not');
});
