/**
 * The failure model in the agent (real onnxruntime, real SQLite outbox; no collector): a C-MAPSS
 * replay as assets gives one prediction per completed cycle, equal to what `npm run eval:rul`'s
 * code predicts for the same window; predictions below the threshold take the priority lane; drift
 * histograms of the model's inputs and outputs are committed once the interval ends; config rules
 * name their key; a bad replay line is refused with its line number; and the failure model rolls out
 * and rolls back through the same machinery as the anomaly model (desired `failureModel`).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Agent } from '../../agent/agent.js';
import { loadAgentConfig, type AgentConfig } from '../../agent/config.js';
import { createAgent } from '../../agent/create-agent.js';
import { CmapssReplaySource } from '../../agent/sources/cmapss-replay.js';
import type { SourceContext, SourceReading } from '../../agent/types.js';
import { FailureModel } from '../../common/models/failure-model.js';
import { readCmapss } from '../../common/models/cmapss.js';
import { ModelFiles } from '../../common/models/files.js';
import { LANE_NORMAL, LANE_PRIORITY } from '../../common/outbox/outbox.js';
import { lastWindows } from '../../models/eval/eval-rul.js';
import { failureModel, MANIFEST, writeCmapssFile } from '../helpers/rul.js';
import { silent, tempDir, waitFor } from '../helpers/stack.js';

const START = Date.parse('2026-11-01T00:00:00Z');

function config(stateDir: string, file: string, overrides: Record<string, unknown> = {}): AgentConfig {
  return loadAgentConfig(
    undefined,
    {
      deviceId: 'engines-1',
      stateDir,
      uplink: { url: 'mqtt://127.0.0.1:9', backoff: { initialMs: 1000, maxMs: 1000 } },
      outbox: { flushIntervalMs: 10 },
      admin: { enabled: false },
      scoring: { enabled: false },
      sources: { simulator: { enabled: false }, cmapssReplay: { enabled: true, file, startAt: START, stepMs: 60_000 } },
      assets: { discover: { pattern: '^(engine-[0-9]+)\\.(.+)$' } },
      failure: { manifestFile: MANIFEST },
      ...overrides,
    },
    {},
  );
}

type Row = Record<string, unknown> & { kind?: string; asset?: string; value: number; ts: number; alert?: boolean };
function lanes(agent: Agent): { priority: Row[]; normal: Row[] } {
  const read = (lane: typeof LANE_PRIORITY | typeof LANE_NORMAL): Row[] =>
    agent.outbox.read(lane, 0, 1_000_000).map((r) => JSON.parse(Buffer.from(r.body).toString('utf8')) as Row);
  return { priority: read(LANE_PRIORITY), normal: read(LANE_NORMAL) };
}

async function replay(agent: Agent, cycles: number): Promise<void> {
  await agent.start();
  const src = agent.supervisors.find((s) => s.name === 'cmapss-replay')!.source as CmapssReplaySource;
  await waitFor(() => src.cycles >= cycles, 20_000, 'the replay');
  await agent.flush();
}

t.test('a C-MAPSS replay as assets: one prediction per cycle, the same numbers as eval:rul, low RUL in the priority lane', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const { entry, path } = failureModel();
  const file = join(dir, 'engines.txt');
  const lives = [40, 25, 60];
  writeCmapssFile(file, entry, lives);
  const agent = await createAgent(config(join(dir, 'a'), file, { failure: { manifestFile: MANIFEST, alertBelow: 0 } }), { log: silent() });
  t.teardown(() => agent.stop());
  await replay(agent, 125);
  const { priority, normal } = lanes(agent);
  t.equal(priority.length, 0, 'threshold 0: no prediction alerts');
  const predictions = normal.filter((r) => r.kind === 'prediction');
  t.equal(predictions.length, 125, 'one prediction per completed cycle of every engine');
  t.equal(normal.filter((r) => r.kind === undefined).length, 125 * 25, 'and every measurement committed as it came');
  for (const p of predictions) t.match(p, { unit: entry.unit, model: entry.version, metric: `${p.asset}.rul` });
  // The last prediction of each engine equals eval:rul's for the same window (the same code path).
  const model = await FailureModel.load(entry, path);
  t.teardown(() => model.close());
  const w = lastWindows(entry, readCmapss(file));
  const expected = await model.predict(w.windows, w.order.length);
  w.order.forEach((unit, k) => {
    const last = predictions.filter((p) => p.asset === `engine-${unit}`).at(-1)!;
    t.equal(last.value, Math.round(expected[k]! * 100) / 100, `engine-${unit}: eval:rul and the agent agree`);
    t.equal(last.ts, START + (lives[k]! - 1) * 60_000, 'stamped with its cycle');
  });
  t.match(agent.twin!.snapshot()['failure'], { model: entry.version, threshold: 0, assets: 3 }, 'reported `failure`');
  t.match(agent.twin!.snapshot()['versions'], { failureModel: entry.version });
});

t.test('predictions below the threshold are alerts in the priority lane; drift histograms follow the interval', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const { entry } = failureModel();
  const file = join(dir, 'engines.txt');
  writeCmapssFile(file, entry, [30, 30]);
  // Above the cap, every prediction is below the threshold; a 1 s drift interval ends during the replay.
  const agent = await createAgent(
    config(join(dir, 'a'), file, { failure: { manifestFile: MANIFEST, alertBelow: entry.rulCap + 1 }, drift: { intervalMs: 1000 } }),
    { log: silent() },
  );
  t.teardown(() => agent.stop());
  await replay(agent, 60);
  const { priority } = lanes(agent);
  t.equal(priority.filter((r) => r.kind === 'prediction' && r.alert === true).length, 60, 'all 60 predictions are alerts, in lane 0');
  // The interval ends by the agent's clock; the next flush after it commits the histograms.
  await new Promise((r) => setTimeout(r, 1100)); // About time: the drift interval is wall-clock time
  agent.emit([{ ts: Date.now(), metric: 'tick', value: 1, unit: '1' }]);
  await agent.flush();
  const drift = lanes(agent).normal.filter((r) => r.kind === 'drift');
  const byQ = (q: string): Row[] => drift.filter((r) => (r['drift'] as { quantity: string }).quantity === q);
  t.equal(byQ('input').length, entry.featureRecipe.features.length, 'one input histogram per model feature');
  t.same(
    byQ('input').map((r) => r.value),
    entry.featureRecipe.features.map(() => 60),
    'each counts the 60 steps',
  );
  t.equal(byQ('output')[0]!.value, 60, 'the output histogram counts the 60 predictions');
  t.equal(byQ('error')[0]!.value, 58, 'step-to-step errors: 29 per engine');
  t.match(byQ('output')[0], { metric: 'rul', model: entry.version, drift: { lo: 0, hi: entry.rulCap, bins: 25 } });
});

t.test('config: assets and failure keys are checked and named', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  t.throws(() => loadAgentConfig(undefined, { assets: { list: [{ id: 'e1', step: { by: 'interval' } }] } }, {}), {
    code: 'EDGETWIN_ERR_CONFIG',
    message: /assets\.list\.0\.step/,
  });
  t.throws(() => loadAgentConfig(undefined, { assets: { list: [{ id: '1bad' }] } }, {}), {
    code: 'EDGETWIN_ERR_CONFIG',
    message: /assets\.list\.0\.id/,
  });
  t.throws(() => loadAgentConfig(undefined, { failure: { alertBelow: -1 } }, {}), {
    code: 'EDGETWIN_ERR_CONFIG',
    message: /failure\.alertBelow/,
  });
  // Not set: the model's own threshold (an unset key must not read as 0, which never alerts).
  t.equal(loadAgentConfig(undefined, {}, {}).failure.alertBelow, undefined, 'failure.alertBelow unset by default');
  // auto: no assets configured, no failure model.
  const off = await createAgent(
    config(join(dir, 'off'), join(dir, 'none.txt'), { assets: {}, sources: { simulator: { enabled: false } } }),
    {
      log: silent(),
      sources: [],
    },
  );
  t.notOk((off.twin!.snapshot()['versions'] as Record<string, unknown>)['failureModel'], 'failure: auto without assets is off');
  await off.stop();
});

t.test('the replay source: fleet order, timestamps by cycle, a bad line refused with its line number', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const { entry } = failureModel();
  const file = join(dir, 'engines.txt');
  writeCmapssFile(file, entry, [2, 3], 2, ['3 1 not a number', '']);
  const src = new CmapssReplaySource({ ...config(dir, file).sources.cmapssReplay, columns: ['s2'] });
  const out: SourceReading[] = [];
  const rejected: string[] = [];
  let finished = false;
  const ctx = {
    emit: (r: SourceReading[]) => out.push(...r),
    emitDurable: async () => undefined,
    fail: (e: unknown) => t.fail(String(e)),
    reject: (e: Error) => rejected.push(e.message),
    finished: () => (finished = true),
    waitForRoom: async () => undefined,
    log: silent(),
    signal: new AbortController().signal,
  } as SourceContext;
  src.start(ctx);
  await waitFor(() => finished, 5000, 'the replay to finish');
  t.same(
    out.map((r) => `${r.metric}@${(r.ts - START) / 60_000}`),
    ['engine-1.s2@0', 'engine-2.s2@0', 'engine-1.s2@1', 'engine-2.s2@1', 'engine-2.s2@2'],
    'cycle 1 of every engine, then cycle 2 …; ts = startAt + (cycle - 1) × stepMs',
  );
  t.equal(out[0]!.unit, 'degR', "the sensor's unit");
  t.match(rejected, [/engines\.txt line 6: expected 26 columns, found 5/]);
});

t.test('the failure model rolls out and rolls back like the anomaly model (desired failureModel)', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const { entry, bytes } = failureModel();
  const stateDir = join(dir, 'agent');
  const files = new ModelFiles(join(stateDir, 'models'));
  // Same bytes, other versions: 1.8.0 never alerts (threshold 0), 1.9.0 alerts on every prediction (its threshold is above the cap).
  files.put({ entry: { ...entry, version: 'rul-1.8.0', file: 'rul-1.8.0.onnx', thresholds: { alertBelow: 0 } } }, bytes);
  files.put({ entry: { ...entry, version: 'rul-1.9.0', file: 'rul-1.9.0.onnx', thresholds: { alertBelow: 1000 } } }, bytes);
  const keep = (version: string): void =>
    writeFileSync(
      join(stateDir, 'twin-desired.json'),
      JSON.stringify({ version: 2, desired: { failureModel: { name: entry.name, version, sha256: entry.sha256 } } }),
    );
  const file = join(dir, 'engines.txt');
  writeCmapssFile(file, entry, [60, 60, 60, 60]);
  const cfg = config(stateDir, file, { failure: { manifestFile: MANIFEST, rollout: { minReadings: 100, trialReadings: 10_000 } } });
  const version = (a: Agent): string | undefined => (a.twin!.snapshot()['versions'] as { failureModel?: string }).failureModel;
  const rollout = (a: Agent): Record<string, unknown> => a.twin!.snapshot()['failureModelRollout'] as Record<string, unknown>;

  keep('rul-1.8.0');
  let agent = await createAgent(cfg, { log: silent() });
  await replay(agent, 240);
  t.equal(version(agent), 'rul-1.8.0', 'the desired version runs, from the local copy');
  t.equal(rollout(agent)['state'], 'trial');
  t.ok(lanes(agent).normal.some((r) => r.kind === 'prediction' && r['model'] === 'rul-1.8.0'));
  await agent.stop();

  keep('rul-1.9.0');
  agent = await createAgent(cfg, { log: silent() });
  const second = agent;
  t.teardown(() => second.stop());
  await replay(agent, 240);
  const rolledBack = await waitFor(() => rollout(agent)['state'] === 'rolled_back', 10_000, 'the rollback').then(
    () => true,
    () => false,
  );
  t.ok(rolledBack, `rolled back (${JSON.stringify(rollout(agent))})`);
  t.equal(version(agent), entry.version, 'an exploding alert rate rolls back to the configured model');
  t.match(rollout(agent)['reason'], { code: 'EDGETWIN_ERR_MODEL_ROLLED_BACK', model: 'rul-1.9.0' });
  t.match(agent.twin!.state.errors['failureModel'], { code: 'EDGETWIN_ERR_MODEL_ROLLED_BACK' }, 'errors.failureModel says why');
  await agent.stop();
});
