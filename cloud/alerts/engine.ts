/**
 * AlertEngine: evaluates every enabled rule on a timer (and soon after a poke), and keeps one alert
 * per rule and key in step with its condition — grouping and deduplication: a device that sends a
 * thousand anomalous readings has one open alert and gets one notification, and one more when it
 * resolves. A condition that must hold `forS` first is `pending` until then (no notification).
 * A silenced alert is recorded but not notified; if the silence ends while it still fires, it is
 * notified then. Each rule's changes and their notifications are written in one transaction.
 *
 * With several replicas only the holder of the `alerts` lease evaluates and delivers; the partial
 * unique index on open alerts guards against a second holder during a handover.
 */
import type { Logger } from '../../common/log.js';
import { RerunTimer } from '../../common/rerun-timer.js';
import { SerialQueue } from '../../common/serial-queue.js';
import { counter, histogram, type Registry } from '../../common/metrics.js';
import type { Lease, Store, Tx } from '../store/store.js';
import { silenceMatches, toAlert, newId, type AlertRow, type AlertStore } from './alert-store.js';
import type { ApiLatencyWindow } from './api-latency.js';
import type { AlertsConfig } from './config.js';
import { observe, type ConditionContext } from './conditions.js';
import type { ResolvedDestination } from './notify/destinations.js';
import { destinationsFor, enqueueNotification, type Notifier } from './notify/notifier.js';
import type { Rule } from './rules.js';
import type { AlertSignals, Observation } from './signals.js';
import type { NotificationBody } from './types.js';

export interface AlertEngineOptions {
  store: Store;
  alerts: AlertStore;
  cfg: AlertsConfig;
  destinations: readonly ResolvedDestination[];
  notifier: Notifier;
  signals: AlertSignals;
  apiLatency: ApiLatencyWindow;
  lakeWriter: ConditionContext['lakeWriter'];
  eventHubsLagS: ConditionContext['eventHubsLagS'];
  log: Logger;
  registry: Registry;
  now?: () => number;
}

type SilenceRow = Awaited<ReturnType<AlertStore['activeSilences']>>[number];

export class AlertEngine {
  /** Evaluates every evaluateIntervalMs while the lease is held, and soon after a poke. */
  private readonly timer = new RerunTimer({
    run: () => this.evaluate(),
    next: () => this.o.cfg.evaluateIntervalMs,
    onError: (err) => this.o.log.error({ err }, 'alert evaluation failed'),
  });
  private readonly serial = new SerialQueue();
  private lease: Lease | undefined;
  private stopped = false;
  private readonly now: () => number;
  private readonly mFired;
  private readonly mResolved;
  private readonly mErrors;
  private readonly mDuration;

  constructor(private readonly o: AlertEngineOptions) {
    this.now = o.now ?? Date.now;
    this.mFired = counter(o.registry, 'edgetwin_cloud_alerts_fired_total', 'Alerts that started firing, by rule', ['rule', 'severity']);
    this.mResolved = counter(o.registry, 'edgetwin_cloud_alerts_resolved_total', 'Alerts that resolved, by rule', ['rule']);
    this.mErrors = counter(o.registry, 'edgetwin_cloud_alert_rule_errors_total', 'Rule evaluations that failed, by rule', ['rule']);
    this.mDuration = histogram(
      o.registry,
      'edgetwin_cloud_alert_evaluation_seconds',
      'Time to evaluate every rule once',
      [],
      [0.005, 0.02, 0.1, 0.5, 2, 10],
    );
    o.signals.onPoke(() => this.poke());
  }

  private get destinationIds(): string[] {
    return this.o.destinations.map((d) => d.id);
  }

  /** Takes the `alerts` lease; while held, syncs the config's rules, delivers and evaluates. */
  start(): void {
    this.lease = this.o.store.lease('alerts', 5000);
    this.lease.onChange((held) => {
      if (this.stopped) return;
      if (!held) {
        this.timer.cancel();
        return;
      }
      void this.o.alerts.syncConfigRules(this.o.cfg.rules).then(
        () => {
          this.o.notifier.start();
          this.timer.schedule(0);
        },
        (err: unknown) => this.o.log.error({ err }, 'alert rules from config could not be stored; alerts are not evaluated'),
      );
    });
  }

  /** Evaluates soon (an anomaly arrived, a signal changed). */
  poke(): void {
    if (this.lease?.held && !this.stopped) this.timer.schedule(50);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.timer.stop();
    await this.o.notifier.stop();
    await this.lease?.release();
  }

  /** One evaluation of every rule (the timer's work; tests call it directly). Evaluations never overlap. */
  evaluate(): Promise<{ fired: number; resolved: number }> {
    return this.serial.run(() => this.evaluateNow());
  }

  private async evaluateNow(): Promise<{ fired: number; resolved: number }> {
    const started = process.hrtime.bigint();
    const now = this.now();
    const rules = await this.o.alerts.rules(this.destinationIds);
    const enabled = rules.filter((r) => r.enabled);
    const silences = await this.o.alerts.activeSilences(this.o.store, now);
    const ctx: ConditionContext = {
      store: this.o.store,
      now,
      lakeWriter: this.o.lakeWriter,
      eventHubsLagS: this.o.eventHubsLagS,
      apiLatency: this.o.apiLatency,
      signals: this.o.signals,
    };
    const total = { fired: 0, resolved: 0 };
    let poke = false;
    for (const rule of enabled) {
      try {
        const obs = await observe(rule, ctx);
        const r = await this.o.store.tx((tx) => this.reconcile(tx, rule, obs, silences, now));
        total.fired += r.fired;
        total.resolved += r.resolved;
        poke ||= r.queued;
      } catch (err) {
        this.mErrors.inc({ rule: rule.id });
        this.o.log.warn({ err, rule: rule.id }, 'alert rule evaluation failed');
      }
    }
    // Alerts of rules that were deleted or disabled resolve.
    const live = new Set(enabled.map((r) => r.id));
    const orphans = await this.o.store.all<{ rule_id: string }>("SELECT DISTINCT rule_id FROM alerts WHERE state <> 'resolved'");
    for (const { rule_id } of orphans) {
      if (live.has(rule_id)) continue;
      const rule = rules.find((r) => r.id === rule_id);
      const r = await this.o.store.tx((tx) => this.reconcile(tx, rule ?? orphanRule(rule_id), [], silences, now));
      total.resolved += r.resolved;
      poke ||= r.queued;
    }
    if (poke) this.o.notifier.poke();
    await this.housekeeping(now);
    this.mDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
    return total;
  }

  private async reconcile(
    tx: Tx,
    rule: Rule,
    obs: Observation[],
    silences: SilenceRow[],
    now: number,
  ): Promise<{ fired: number; resolved: number; queued: boolean }> {
    const open = new Map(
      (await tx.all<AlertRow>(`SELECT * FROM alerts WHERE rule_id = ? AND state <> 'resolved'${tx.dialect.forUpdate}`, [rule.id])).map(
        (a) => [a.alert_key, a],
      ),
    );
    let fired = 0;
    let resolved = 0;
    let queued = false;
    const notify = async (a: AlertRow, event: NotificationBody['event']): Promise<void> => {
      const targets = destinationsFor(this.o.destinations, rule.destinations, rule.severity);
      const alert = toAlert(a, silences);
      const url = this.o.cfg.publicUrl ? `${this.o.cfg.publicUrl.replace(/\/$/, '')}/#/alerts/${a.id}` : null;
      if (targets.length > 0) {
        await enqueueNotification(tx, targets, { event, alert, url }, now);
        queued = true;
      }
    };
    const silenced = (a: AlertRow): boolean => silences.some((s) => silenceMatches(s, a));
    const fire = async (a: AlertRow): Promise<void> => {
      a.state = 'firing';
      a.fired_at ??= now;
      fired++;
      this.mFired.inc({ rule: rule.id, severity: rule.severity });
    };
    for (const o of obs) {
      let a = open.get(o.key);
      open.delete(o.key);
      const wasFiring = a?.state === 'firing';
      if (!a) {
        a = {
          id: newId('a'),
          rule_id: rule.id,
          fingerprint: `${rule.id}|${o.key}`,
          alert_key: o.key,
          kind: rule.kind === 'signal' ? `signal:${rule.signal}` : rule.kind,
          rule_name: rule.name,
          severity: rule.severity,
          state: 'pending',
          site: o.site,
          device: o.device,
          summary: o.summary,
          value: o.value,
          labels: JSON.stringify(o.labels ?? {}),
          started_at: now,
          fired_at: null,
          resolved_at: null,
          last_seen_at: now,
          notified_at: null,
          acked_at: null,
          acked_by: null,
          ack_note: null,
        };
        if (rule.forS <= 0) await fire(a);
        await tx.run(
          `INSERT INTO alerts (id, rule_id, fingerprint, alert_key, kind, rule_name, severity, state, site, device, summary, value, labels,
             started_at, fired_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          [
            a.id,
            a.rule_id,
            a.fingerprint,
            a.alert_key,
            a.kind,
            a.rule_name,
            a.severity,
            a.state,
            a.site,
            a.device,
            a.summary,
            a.value,
            a.labels,
            now,
            a.fired_at,
            now,
          ],
        );
      } else {
        a.summary = o.summary;
        a.value = o.value;
        a.last_seen_at = now;
        if (a.state === 'pending' && now - a.started_at >= rule.forS * 1000) await fire(a);
        await tx.run('UPDATE alerts SET state = ?, fired_at = ?, summary = ?, value = ?, last_seen_at = ? WHERE id = ?', [
          a.state,
          a.fired_at,
          a.summary,
          a.value,
          now,
          a.id,
        ]);
      }
      // One notification per open alert: when it fires, or when a silence over it ends.
      if (a.state === 'firing' && a.notified_at === null && !silenced(a)) {
        await notify(a, 'firing');
        a.notified_at = now;
        await tx.run('UPDATE alerts SET notified_at = ? WHERE id = ?', [now, a.id]);
      }
      if (a.state === 'firing' && !wasFiring) {
        tx.emit({ type: 'alert', site: a.site ?? '', device: a.device, data: toAlert(a, silences) as unknown as Record<string, unknown> });
        const fields = logFields(a);
        // Read by the Azure Monitor log alerts (deploy/azure/terraform/monitoring.tf): keep `event` and `alert.kind`.
        tx.afterCommit(() => this.o.log.warn({ event: 'alert.firing', alert: fields }, `alert firing: ${a.summary}`));
      }
    }
    for (const a of open.values()) {
      const notified = a.notified_at !== null;
      a.state = 'resolved';
      a.resolved_at = now;
      await tx.run("UPDATE alerts SET state = 'resolved', resolved_at = ? WHERE id = ?", [now, a.id]);
      if (a.fired_at !== null) {
        resolved++;
        this.mResolved.inc({ rule: rule.id });
        const fields = logFields(a);
        tx.afterCommit(() => this.o.log.info({ event: 'alert.resolved', alert: fields }, `alert resolved: ${a.rule_name} ${a.alert_key}`));
        tx.emit({ type: 'alert', site: a.site ?? '', device: a.device, data: toAlert(a, silences) as unknown as Record<string, unknown> });
      }
      if (notified) await notify(a, 'resolved');
    }
    return { fired, resolved, queued };
  }

  private lastHousekeeping = 0;

  /** Once an hour: forget resolved alerts, delivered notifications and ended silences past retention. */
  private async housekeeping(now: number): Promise<void> {
    if (now - this.lastHousekeeping < 3_600_000) return;
    this.lastHousekeeping = now;
    const before = now - this.o.cfg.retentionDays * 86_400_000;
    await this.o.store.run("DELETE FROM alerts WHERE state = 'resolved' AND resolved_at < ?", [before]);
    await this.o.store.run('DELETE FROM alert_silences WHERE ends_at < ?', [before]);
    await this.o.notifier.prune(now - before);
  }
}

function logFields(a: AlertRow): Record<string, unknown> {
  return {
    id: a.id,
    rule: a.rule_id,
    kind: a.kind,
    key: a.alert_key,
    severity: a.severity,
    site: a.site,
    device: a.device,
    value: a.value,
  };
}

/** A stand-in for a rule that no longer exists, so its open alerts can resolve (without notifications to a rule's list). */
function orphanRule(id: string): Rule {
  return { id, kind: 'signal', signal: 'removed', name: id, severity: 'info', enabled: false, forS: 0, destinations: [], origin: 'api' };
}
