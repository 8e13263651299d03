/**
 * The cloud's alerting, assembled: rules and alerts in the store, the evaluation engine, the
 * notifier with its destinations, and the signal registry other cloud modules feed. Built by
 * cloud/cloud.ts; the API routes (cloud/api/routes/alerts.ts) use `alerts`, `notifier`, `rules`.
 */
import { EdgetwinError, ErrorCodes, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { Registry } from '../../common/metrics.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Principal } from '../auth/tokens.js';
import type { Store } from '../store/store.js';
import { AlertStore } from './alert-store.js';
import { ApiLatencyWindow } from './api-latency.js';
import type { AlertsConfig } from './config.js';
import type { ConditionContext } from './conditions.js';
import { AlertEngine } from './engine.js';
import { resolveDestination, type ResolvedDestination } from './notify/destinations.js';
import { Notifier } from './notify/notifier.js';
import { normalizeRule } from './rules.js';
import { AlertSignals } from './signals.js';

/** Config checks beyond the schema (unique ids, known destinations, each kind's parameters). */
export function checkAlertsConfig(c: AlertsConfig, fail: (key: string, msg: string) => Error): void {
  const dests = new Set<string>();
  c.destinations.forEach((d, i) => {
    if (dests.has(d.id)) throw fail(`alerts.destinations[${i}].id`, `"${d.id}" is used twice`);
    dests.add(d.id);
  });
  const ids = new Set<string>();
  c.rules.forEach((r, i) => {
    if (ids.has(r.id)) throw fail(`alerts.rules[${i}].id`, `"${r.id}" is used twice`);
    ids.add(r.id);
    try {
      normalizeRule(r, 'config', [...dests]);
    } catch (err) {
      throw fail(`alerts.rules[${i}]`, errorMessage(err));
    }
  });
}

export interface AlertingOptions {
  cfg: AlertsConfig;
  store: Store;
  audit: AuditLog;
  log: Logger;
  registry: Registry;
  lakeWriter: ConditionContext['lakeWriter'];
  eventHubsLagS: ConditionContext['eventHubsLagS'];
  env?: NodeJS.ProcessEnv;
  now?: () => number;
}

export class Alerting {
  readonly signals = new AlertSignals();
  readonly alerts: AlertStore;
  readonly notifier: Notifier;
  readonly engine: AlertEngine;
  readonly destinations: ResolvedDestination[];

  constructor(private readonly o: AlertingOptions) {
    // Secrets are read once, at start: a destination whose secret is missing stops the start with its key named.
    this.destinations = o.cfg.destinations.map((d) => resolveDestination(d, o.env));
    this.alerts = new AlertStore(o.store, o.audit);
    this.notifier = new Notifier({
      store: o.store,
      destinations: this.destinations,
      retry: o.cfg.retry,
      log: o.log,
      registry: o.registry,
      ...(o.now ? { now: o.now } : {}),
    });
    this.engine = new AlertEngine({
      store: o.store,
      alerts: this.alerts,
      cfg: o.cfg,
      destinations: this.destinations,
      notifier: this.notifier,
      signals: this.signals,
      apiLatency: new ApiLatencyWindow(o.registry),
      lakeWriter: o.lakeWriter,
      eventHubsLagS: o.eventHubsLagS,
      log: o.log,
      registry: o.registry,
      ...(o.now ? { now: o.now } : {}),
    });
    if (!o.cfg.enabled) this.engine = disabled(this.engine);
  }

  /** Re-queues a dead letter, audited in the same transaction. */
  async retryNotification(id: number, who: Principal): Promise<boolean> {
    return this.o.store.tx(async (tx) => {
      const ok = await this.notifier.retry(id, tx);
      if (ok) {
        await this.o.audit.record(tx, who, 'alert.notification_retry', {}, { notification: id });
        tx.afterCommit(() => this.notifier.poke());
      }
      return ok;
    });
  }

  get destinationIds(): string[] {
    return this.destinations.map((d) => d.id);
  }

  start(): void {
    this.engine.start();
  }

  stop(): Promise<void> {
    return this.engine.stop();
  }

  /** 400 for a rule naming a destination or parameters that do not exist (the API's check). */
  checkRule(spec: Parameters<typeof normalizeRule>[0]): void {
    try {
      normalizeRule(spec, 'api', this.destinationIds);
    } catch (err) {
      throw err instanceof EdgetwinError ? err : new EdgetwinError(ErrorCodes.BAD_REQUEST, errorMessage(err));
    }
  }
}

/** `alerts.enabled: false`: the API still lists what is stored, nothing is evaluated or sent. */
function disabled(engine: AlertEngine): AlertEngine {
  return Object.assign(Object.create(engine) as AlertEngine, {
    start: () => undefined,
    stop: () => Promise.resolve(),
    poke: () => undefined,
  });
}
