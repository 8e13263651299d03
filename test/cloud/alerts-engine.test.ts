/**
 * The alert engine on a real store (SQLite, migrations applied) with an injected clock: every rule
 * kind fires from the state it reads and resolves when that state clears; grouping and dedup (one
 * alert and one notification per rule and key, however many evaluations), `forS` pending, silences
 * (recorded, not notified; notified when the silence ends), acknowledgements audited, removed rules
 * resolving their alerts, and the database refusing a second open alert for one fingerprint.
 */
import { join } from 'node:path';
import t from 'tap';
import { Alerting } from '../../cloud/alerts/alerting.js';
import { alertsDefaults, type AlertsConfig } from '../../cloud/alerts/config.js';
import type { RuleSpec } from '../../cloud/alerts/rules.js';
import { AuditLog } from '../../cloud/audit/audit-log.js';
import { SqliteStore } from '../../cloud/store/sqlite-store.js';
import { createLogger } from '../../common/log.js';
import { createRegistry, histogram } from '../../common/metrics.js';
import { startHttpReceiver } from '../helpers/receivers.js';
import { tempDir } from '../helpers/util.js';
import { writeFileSync } from 'node:fs';

const log = createLogger('test', { level: 'silent' });
const who = { id: 't_1', name: 'olga', role: 'operator' as const, site: null };

t.test('alert engine', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const store = await SqliteStore.open({ stateDir: dir });
  t.teardown(() => store.close());
  const rx = await startHttpReceiver();
  t.teardown(() => rx.close());
  writeFileSync(join(dir, 'secret'), 'shh-0123456789', { mode: 0o600 });
  let now = Date.parse('2026-12-07T10:00:00Z');
  let writer = { failingSinceMs: 0, lastError: null as string | null };
  let ehLagS: number | undefined = 2;
  const registry = createRegistry('test');
  const latency = histogram(registry, 'edgetwin_cloud_http_request_duration_seconds', 'x', ['route'], [0.05, 0.1, 0.25, 0.5, 1]);
  const rules: RuleSpec[] = [
    { id: 'offline', kind: 'device_offline', afterS: 300 },
    { id: 'anomaly', kind: 'device_anomaly', site: 'site-a' },
    { id: 'stale', kind: 'site_heartbeat_stale' },
    { id: 'quality', kind: 'data_quality', below: 0.95, windowS: 600, minCount: 100 },
    { id: 'quarantine', kind: 'quarantine_rate', above: 0.02, windowS: 600, minCount: 100 },
    { id: 'lake', kind: 'lake_writer_failing', afterS: 120 },
    { id: 'p99', kind: 'api_p99', aboveMs: 200, windowS: 60, minCount: 50 },
    { id: 'lag', kind: 'eventhubs_lag', aboveS: 30 },
    { id: 'rul', kind: 'signal', signal: 'rul_low', forS: 60, destinations: ['hook'] },
  ];
  const cfg: AlertsConfig = {
    ...alertsDefaults,
    rules,
    destinations: [{ id: 'hook', kind: 'webhook', webhookUrl: rx.url, secretFile: join(dir, 'secret') }],
  };
  const alerting = new Alerting({
    cfg,
    store,
    audit: new AuditLog(store),
    log,
    registry,
    lakeWriter: () => writer,
    eventHubsLagS: () => ehLagS,
    now: () => now,
  });
  await alerting.alerts.syncConfigRules(cfg.rules, now);
  const evaluate = () => alerting.engine.evaluate();
  const open = async (rule: string) =>
    (await alerting.alerts.list({ state: 'open', ruleId: rule, limit: 50 })).map((a) => [a.key, a.state]);
  const queued = async (alertKey?: string) =>
    (await store.all<{ event: string; body: string }>('SELECT event, body FROM alert_notifications ORDER BY id'))
      .map((r) => ({ event: r.event, alert: JSON.parse(r.body).alert }))
      .filter((n) => alertKey === undefined || n.alert.key === alertKey)
      .map((n) => `${n.event}:${n.alert.ruleId}:${n.alert.key}`);
  const twin = (device: string, site: string, lastSeen: number, anomalous = 0) =>
    store.run(
      'INSERT INTO twins (device, site, first_seen, last_seen, anomalous, anomaly_score, anomaly_metric) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET last_seen = excluded.last_seen, anomalous = excluded.anomalous',
      [device, site, lastSeen, lastSeen, anomalous, anomalous ? 0.97 : null, anomalous ? 'vibration' : null],
    );

  await t.test('offline: one alert and one notification however often evaluated; resolve notified once', async (t) => {
    await twin('pump-1', 'site-a', now - 10_000);
    await twin('pump-2', 'site-a', now - 400_000);
    for (let i = 0; i < 4; i++) {
      await evaluate();
      now += 15_000;
    }
    t.same(await open('offline'), [['pump-2', 'firing']]);
    t.same(await queued('pump-2'), ['firing:offline:pump-2'], 'one notification for four evaluations');
    await twin('pump-2', 'site-a', now);
    await evaluate();
    await evaluate();
    t.same(await open('offline'), []);
    t.same(await queued('pump-2'), ['firing:offline:pump-2', 'resolved:offline:pump-2']);
    const [resolved] = await alerting.alerts.list({ state: 'resolved', ruleId: 'offline', limit: 5 });
    t.ok(resolved!.resolvedAt && resolved!.firedAt, 'fired and resolved times kept');
  });

  await t.test('delivered to the webhook in order', async (t) => {
    alerting.notifier.start();
    alerting.notifier.poke();
    await rx.waitFor(2);
    t.same(
      rx.received.map((r) => JSON.parse(r.body).event),
      ['firing', 'resolved'],
    );
    await alerting.notifier.stop();
  });

  await t.test('anomaly (site-scoped rule), site heartbeat, data quality and quarantine rate, lake writer, API p99', async (t) => {
    await twin('fan-a', 'site-a', now, 1);
    await twin('fan-b', 'site-b', now, 1);
    // fan-a's newest alert carries its explanation: the notification text names the top 3 causes.
    const explain = {
      detector: 'step',
      surprise: 9.5,
      baseline: 0.4,
      groups: [
        { group: 'value', contribution: 6.25 },
        { group: 'recent', contribution: 3.2 },
        { group: 'noise', contribution: -0.35 },
      ],
    };
    const lastAlert = { metric: 'vibration', ts: now, value: 9, score: 0.97, model: 'forecaster-2.0.0', explain };
    await store.run('UPDATE twins SET last_alert = ? WHERE device = ?', [JSON.stringify(lastAlert), 'fan-a']);
    await store.run('INSERT INTO site_status (site, received, report) VALUES (?, ?, ?), (?, ?, ?)', [
      'site-a',
      now - 5_000,
      JSON.stringify({ intervalMs: 10_000 }),
      'site-b',
      now - 31_000,
      JSON.stringify({ intervalMs: 10_000 }),
    ]);
    const batch = (id: string, site: string, passed: number, quarantined: number, at = now) =>
      store.run(
        'INSERT INTO batches (batch_id, site, received, readings, passed, quarantined, rejected, duplicates) VALUES (?, ?, ?, ?, ?, ?, 0, 0)',
        [id, site, at, passed + quarantined, passed, quarantined],
      );
    await batch('b1', 'site-a', 990, 10);
    await batch('b2', 'site-b', 900, 100);
    await batch('b3', 'site-c', 5, 5); // under minCount
    await batch('b4', 'site-a', 0, 1000, now - 700_000); // outside the window
    writer = { failingSinceMs: 130_000, lastError: 'IO Error: disk quota' };
    ehLagS = 45;
    for (let i = 0; i < 100; i++) latency.observe({ route: '/v1/twins' }, i < 97 ? 0.01 : 0.4);
    await evaluate(); // the first p99 evaluation only takes a snapshot
    for (let i = 0; i < 100; i++) latency.observe({ route: '/v1/twins' }, i < 95 ? 0.01 : 0.4);
    now += 1000;
    await evaluate();
    t.same(await open('anomaly'), [['fan-a', 'firing']], 'the rule covers site-a only');
    const [anomaly] = await alerting.alerts.list({ state: 'open', ruleId: 'anomaly', limit: 5 });
    t.equal(
      anomaly!.summary,
      'fan-a is anomalous on vibration (score 0.97) — top causes: value +6.25, recent +3.2, noise −0.35 (step head)',
      'the notification text carries the top-3 explanation, signed',
    );
    t.same(await open('stale'), [['site-b', 'firing']], 'three missed intervals');
    t.same(await open('quality'), [['site-b', 'firing']], '90 % < 95 %; site-a 99 %; site-c under minCount; old batch outside the window');
    t.same(await open('quarantine'), [['site-b', 'firing']]);
    t.same(await open('lake'), [['lakehouse', 'firing']]);
    t.same(await open('lag'), [['eventhubs', 'firing']], 'Event Hubs consumer 45 s behind (limit 30 s)');
    t.same(await open('p99'), [['api', 'firing']], 'p99 over the window > 200 ms');
    const [p99] = await alerting.alerts.list({ ruleId: 'p99', limit: 1 });
    t.ok(p99!.value! > 200 && p99!.value! <= 500, `p99 ${p99!.value} ms interpolated in its bucket`);
    const [q] = await alerting.alerts.list({ ruleId: 'quality', limit: 1 });
    t.equal(q!.value, 0.9);
    writer = { failingSinceMs: 0, lastError: null };
    ehLagS = undefined; // the consumer stopped: no lag to report
    await twin('fan-a', 'site-a', now, 0);
    now += 61_000;
    for (let i = 0; i < 100; i++) latency.observe({ route: '/v1/twins' }, 0.01);
    await evaluate();
    t.same(
      [await open('anomaly'), await open('lake'), await open('p99'), await open('lag')],
      [[], [], [], []],
      'each resolves when its condition clears',
    );
  });

  await t.test("forS: pending first, fires once it held long enough; only to the rule's destinations", async (t) => {
    const active = new Set(['turbine-3/engine']);
    alerting.signals.register('rul_low', async () =>
      [...active].map((key) => ({ key, site: 'site-a', device: 'turbine-3', value: 12, summary: `${key}: 12 cycles left` })),
    );
    await evaluate();
    t.same(await open('rul'), [['turbine-3/engine', 'pending']]);
    t.same(await queued('turbine-3/engine'), [], 'no notification while pending');
    now += 61_000;
    await evaluate();
    t.same(await open('rul'), [['turbine-3/engine', 'firing']]);
    t.same(await queued('turbine-3/engine'), ['firing:rul:turbine-3/engine']);
    active.clear();
    await evaluate();
    t.same(await queued('turbine-3/engine'), ['firing:rul:turbine-3/engine', 'resolved:rul:turbine-3/engine']);
  });

  await t.test('silence: recorded, not notified; notified when the silence ends; ack audited', async (t) => {
    const s = await alerting.alerts.silence({ device: 'pump-9', durationS: 600, comment: 'maintenance' }, who, now);
    await twin('pump-9', 'site-a', now - 400_000);
    await evaluate();
    const [a] = await alerting.alerts.list({ device: 'pump-9', limit: 5 }, now);
    t.same([a!.state, a!.silenced], ['firing', true]);
    t.same(await queued('pump-9'), [], 'silenced: no notification');
    await alerting.alerts.unsilence(s.id, who, () => undefined, now + 1000);
    now += 2000;
    await evaluate();
    t.same(await queued('pump-9'), ['firing:offline:pump-9'], 'notified once the silence ended');
    const acked = await alerting.alerts.ack(a!.id, who, 'on it', now);
    t.same([acked.acknowledgedBy, acked.ackNote], ['olga', 'on it']);
    const audit = await store.all<{ action: string; actor: string }>(
      "SELECT action, actor FROM audit WHERE action LIKE 'alert.%' ORDER BY id",
    );
    t.same(
      audit.map((r) => r.action),
      ['alert.silence', 'alert.unsilence', 'alert.ack'],
    );
    await t.rejects(alerting.alerts.silence({ durationS: 60, comment: 'all' }, who, now), /needs at least one of/);
  });

  await t.test('a removed rule resolves its alerts; a second open alert per fingerprint is refused by the database', async (t) => {
    t.ok((await open('stale')).length > 0);
    await alerting.alerts.syncConfigRules(
      rules.filter((r) => r.id !== 'stale'),
      now,
    );
    await evaluate();
    t.same(await open('stale'), []);
    const [a] = await alerting.alerts.list({ ruleId: 'quality', limit: 1 });
    await t.rejects(
      store.run(
        "INSERT INTO alerts (id, rule_id, fingerprint, alert_key, kind, rule_name, severity, state, summary, started_at, last_seen_at) VALUES ('dup', 'quality', ?, 'x', 'k', 'n', 'info', 'firing', 's', 0, 0)",
        [`quality|${a!.key}`],
      ),
      /UNIQUE/,
    );
  });
});
