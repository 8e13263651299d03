/**
 * Scoring wired into the agent (real onnxruntime, real SQLite outbox; no collector needed):
 * the `scoring` config section, readings carrying score and model, alerts in the outbox's
 * priority lane, the rollback rule with its units, and a restart with a rolled-out model kept on
 * disk — applied before any source starts, a rolled-back one never run again.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Agent } from '../../agent/agent.js';
import { loadAgentConfig, type AgentConfig } from '../../agent/config.js';
import { AlertCount, judgeTrial } from '../../agent/rollout/alert-rate.js';
import { createAgent, scoringManifest } from '../../agent/create-agent.js';
import { ModelRollout } from '../../agent/rollout/model-rollout.js';
import type { DesiredApplier } from '../../agent/twin/desired-appliers.js';
import { createRegistry } from '../../common/metrics.js';
import type { Source, SourceContext } from '../../agent/types.js';
import { ModelFiles } from '../../common/models/files.js';
import { LANE_NORMAL, LANE_PRIORITY } from '../../common/outbox/outbox.js';
import { MANIFEST, baseModel, variant } from '../helpers/models.js';
import { silent, tempDir, waitFor } from '../helpers/stack.js';

/** Emits `total` readings of three metrics, a few per tick. */
class Steady implements Source {
  readonly name = 'steady';
  emitted = 0;
  private timer: NodeJS.Timeout | undefined;
  constructor(private readonly total: number) {}
  start(ctx: SourceContext): void {
    const t0 = Date.now() - 86_400_000;
    this.timer = setInterval(() => {
      const out = [];
      for (let i = 0; i < 30 && this.emitted < this.total; i++, this.emitted++) {
        const k = Math.floor(this.emitted / 3);
        out.push({ ts: t0 + k * 1000, metric: `m${this.emitted % 3}`, value: 10 + Math.sin(k / 20), unit: 'u' });
      }
      if (out.length) ctx.emit(out);
    }, 5);
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

function config(stateDir: string, scoring: object = {}): AgentConfig {
  return loadAgentConfig(
    undefined,
    {
      deviceId: 'scored-1',
      stateDir,
      // Nothing listens there: the readings stay in the outbox for the test to read.
      uplink: { url: 'mqtt://127.0.0.1:9', backoff: { initialMs: 1000, maxMs: 1000 } },
      outbox: { flushIntervalMs: 10 },
      admin: { enabled: false },
      scoring: { enabled: true, manifestFile: MANIFEST, ...scoring },
    },
    {},
  );
}

function lanes(agent: Agent): { priority: Record<string, unknown>[]; normal: Record<string, unknown>[] } {
  const read = (lane: typeof LANE_PRIORITY | typeof LANE_NORMAL): Record<string, unknown>[] =>
    agent.outbox.read(lane, 0, 100_000).map((r) => JSON.parse(Buffer.from(r.body).toString('utf8')) as Record<string, unknown>);
  return { priority: read(LANE_PRIORITY), normal: read(LANE_NORMAL) };
}

async function run(agent: Agent, source: Steady, total: number): Promise<void> {
  await agent.start();
  await waitFor(() => source.emitted >= total, 10_000, 'the source to emit');
  await agent.flush();
}

t.test('config: scoring on, off, auto; bad keys fail naming the key', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  t.equal(loadAgentConfig(undefined, {}, {}).scoring.enabled, 'auto', 'auto by default');
  t.equal(scoringManifest(loadAgentConfig(undefined, {}, {})), MANIFEST, 'auto finds models/manifest.json');
  t.equal(scoringManifest(loadAgentConfig(undefined, { scoring: { enabled: false } }, {})), undefined);
  t.equal(
    scoringManifest(loadAgentConfig(undefined, { scoring: { manifestFile: join(dir, 'none.json') } }, {})),
    undefined,
    'auto without a manifest: off',
  );
  t.throws(() => scoringManifest(loadAgentConfig(undefined, { scoring: { enabled: true, manifestFile: join(dir, 'none.json') } }, {})), {
    code: 'EDGETWIN_ERR_CONFIG',
    details: { key: 'scoring.manifestFile' },
  });
  t.throws(() => loadAgentConfig(undefined, { scoring: { rollout: { minReadings: 0 } } }, {}), {
    code: 'EDGETWIN_ERR_CONFIG',
    message: /scoring\.rollout\.minReadings/,
  });
  t.throws(() => loadAgentConfig(undefined, { scoring: { enabled: 'yes' } }, {}), {
    code: 'EDGETWIN_ERR_CONFIG',
    message: /scoring\.enabled/,
  });
  await t.rejects(createAgent(config(join(dir, 'a'), { rollout: { minReadings: 500, trialReadings: 100 } }), { log: silent() }), {
    code: 'EDGETWIN_ERR_CONFIG',
    details: { key: 'scoring.rollout.minReadings' },
  });
  const off = await createAgent(config(join(dir, 'off'), { enabled: false }), { log: silent(), sources: [] });
  t.equal(
    off.twin!.snapshot()['versions'] && (off.twin!.snapshot()['versions'] as { model?: string }).model,
    undefined,
    'no scorer: no model reported',
  );
  await off.stop();
});

t.test('readings carry score and model; alerts go through the priority lane', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  // The model's own threshold: a steady sine raises no alert while streams learn.
  const quiet = new Steady(300);
  let agent = await createAgent(config(join(dir, 'quiet')), { log: silent(), sources: [quiet] });
  await run(agent, quiet, 300);
  let l = lanes(agent);
  t.equal(l.priority.length, 0);
  t.equal(l.normal.length, 300);
  t.ok(
    l.normal.every((r) => typeof r['score'] === 'number' && r['model'] === baseModel().entry.version && r['alert'] === undefined),
    'each reading has score and model',
  );
  await agent.stop();
  // Threshold 0: every reading is an alert, and every one is in the priority lane.
  const loud = new Steady(300);
  agent = await createAgent(config(join(dir, 'loud'), { alertThreshold: 0 }), { log: silent(), sources: [loud] });
  await run(agent, loud, 300);
  l = lanes(agent);
  t.equal(l.normal.length, 0, 'no alert in the telemetry lane');
  t.equal(l.priority.length, 300);
  t.ok(l.priority.every((r) => r['alert'] === true && typeof r['score'] === 'number'));
  await agent.stop();
});

t.test('the rollback rule, in alerts per 10 000 readings', async (t) => {
  const rule = { minReadings: 1000, trialReadings: 5000, alertRateFactor: 10, alertRateFloorPer10k: 100 };
  const count = (readings: number, alerts: number): AlertCount => Object.assign(new AlertCount(), { readings, alerts });
  t.equal(judgeTrial(count(999, 999), count(10_000, 10), rule).verdict, 'continue', 'not judged before minReadings');
  const j = judgeTrial(count(1000, 9), count(10_000, 10), rule);
  t.same(
    [j.verdict, j.alertsPer10k, j.previousAlertsPer10k, j.limitPer10k],
    ['continue', 90, 10, 100],
    '90/10k vs a limit of max(100, 10 × 10)',
  );
  t.equal(judgeTrial(count(1000, 11), count(10_000, 10), rule).verdict, 'rollback', '110/10k is over that limit');
  t.equal(judgeTrial(count(1000, 30), count(10_000, 50), rule).verdict, 'continue', '300/10k is under 10 × 50/10k');
  t.equal(judgeTrial(count(1000, 51), count(10_000, 50), rule).verdict, 'rollback', '510/10k is over 10 × 50/10k');
  t.equal(
    judgeTrial(count(1000, 11), count(500, 0), rule).verdict,
    'rollback',
    'a predecessor with too few readings: the floor alone (110 > 100)',
  );
  t.equal(judgeTrial(count(5000, 40), count(10_000, 10), rule).verdict, 'accept', 'kept after trialReadings');
});

t.test('a kept desired model runs from the local copy at start, before any connection; a rolled-back one never runs again', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const stateDir = join(dir, 'agent');
  const files = new ModelFiles(join(stateDir, 'models'));
  const bytes = baseModel().bytes;
  for (const [version, changes] of [
    ['forecaster-1.1.0', {}],
    ['forecaster-1.3.0', { thresholds: { alert: 0 } }],
  ] as const) {
    files.put({ entry: { ...variant(version, changes).entry } as never }, bytes);
  }
  const keep = (version: string): void =>
    writeFileSync(
      join(stateDir, 'twin-desired.json'),
      JSON.stringify({ version: 3, desired: { model: { name: 'forecaster', version, sha256: baseModel().entry.sha256 } } }),
    );
  const model = (a: Agent): string | undefined => (a.twin!.snapshot()['versions'] as { model?: string }).model;
  const rollout = (a: Agent): Record<string, unknown> => a.twin!.snapshot()['modelRollout'] as Record<string, unknown>;
  const cfg = config(stateDir, { rollout: { minReadings: 150, trialReadings: 100_000 } });

  keep('forecaster-1.1.0');
  let source = new Steady(150);
  let agent = await createAgent(cfg, { log: silent(), sources: [source] });
  await agent.start();
  t.equal(model(agent), 'forecaster-1.1.0', 'swapped in by the time start() returns');
  t.equal(rollout(agent)['state'], 'trial');
  await agent.stop();

  keep('forecaster-1.3.0');
  source = new Steady(3000);
  agent = await createAgent(cfg, { log: silent(), sources: [source] });
  await agent.start();
  t.equal(model(agent), 'forecaster-1.3.0');
  await waitFor(() => rollout(agent)['state'] === 'rolled_back', 10_000, 'the rollback');
  t.equal(model(agent), baseModel().entry.version, 'back on the model it replaced');
  t.match(rollout(agent)['reason'], { code: 'EDGETWIN_ERR_MODEL_ROLLED_BACK' });
  await agent.stop();

  agent = await createAgent(cfg, { log: silent(), sources: [new Steady(0)] });
  await agent.start();
  t.equal(model(agent), baseModel().entry.version, 'after a restart the rolled-back model is not tried again');
  t.equal(rollout(agent)['state'], 'rolled_back');
  t.match(agent.twin!.state.errors['model'], { code: 'EDGETWIN_ERR_MODEL_ROLLED_BACK' }, 'and errors.model says why');
  await agent.stop();
});

t.test('desired naming the configured model swaps back to it from disk, with no download and no trial', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const stateDir = join(dir, 'agent');
  new ModelFiles(join(stateDir, 'models')).put({ entry: { ...variant('forecaster-1.1.0').entry } as never }, baseModel().bytes);
  const appliers = new Map<string, DesiredApplier>();
  // The twin's side of the contract only: appliers registered, reports asked for. No collector: any download would fail.
  const host = {
    log: silent(),
    uplink: { mqttClient: undefined },
    twin: { use: (a: DesiredApplier) => void appliers.set(a.key, a), addReporter: () => undefined, report: async () => undefined },
  };
  const rollout = await ModelRollout.create(config(stateDir).scoring, MANIFEST, {
    stateDir,
    log: silent(),
    registry: createRegistry('test'),
  });
  t.teardown(() => rollout.close());
  rollout.attach(host);
  const sha256 = baseModel().entry.sha256;
  await appliers.get('model')!.apply({ name: 'forecaster', version: 'forecaster-1.1.0', sha256 });
  t.equal(rollout.modelVersion, 'forecaster-1.1.0');
  t.equal(rollout.snapshot()['state'], 'trial');
  await appliers.get('model')!.apply({ name: 'forecaster', version: baseModel().entry.version, sha256 });
  t.equal(rollout.modelVersion, baseModel().entry.version, 'the configured model again');
  t.equal(rollout.snapshot()['state'], 'accepted', "not on trial: it is the agent's own");
  await t.rejects(
    Promise.resolve(appliers.get('model')!.apply({ name: 'forecaster', version: 'forecaster-5.0.0', sha256 })),
    { code: 'EDGETWIN_ERR_UPLINK' },
    'a version not on disk needs the collector',
  );
  t.equal(rollout.snapshot()['state'], 'retrying');
  t.equal(rollout.modelVersion, baseModel().entry.version, 'and the running model carries on');
  t.throws(() => appliers.get('thresholds')!.apply({ alert: 1.5 }), { code: 'EDGETWIN_ERR_CONFIG' });
  t.same(appliers.get('thresholds')!.apply({ alert: 0.7 }), { alert: 0.7 });
});
