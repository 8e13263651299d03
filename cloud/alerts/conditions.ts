/**
 * Each rule kind's condition, read from current state: the twins, site heartbeats and batch
 * quality in the store, the lakehouse writer and Event Hubs consumer status, the API latency
 * histogram, and registered signals. Answers one Observation per key for which the condition holds
 * now; the engine turns appearances into firing alerts and disappearances into resolved ones.
 */
import type { Queryable } from '../store/store.js';
import type { ApiLatencyWindow } from './api-latency.js';
import type { Rule } from './rules.js';
import type { AlertSignals, Observation } from './signals.js';

export interface ConditionContext {
  store: Queryable;
  now: number;
  /** The lakehouse writer's status (undefined before the lake is open). */
  lakeWriter: () => { failingSinceMs: number; lastError: string | null } | undefined;
  /** The Event Hubs consumer's lag in seconds (undefined when it does not run). */
  eventHubsLagS: () => number | undefined;
  apiLatency: ApiLatencyWindow;
  signals: AlertSignals;
}

const round = (x: number, digits = 4): number => Math.round(x * 10 ** digits) / 10 ** digits;
const siteFilter = (r: Rule, column = 'site'): [string, string[]] => (r.site ? [` AND ${column} = ?`, [r.site]] : ['', []]);
/** An observation about a whole site (no device), keyed by the site. */
const siteObservation = (site: string, value: number, summary: string): Observation => ({ key: site, site, device: null, value, summary });

/** "top causes: value +6.25, daily +2.5, noise -0.35 (level head)" from the twin's newest alert, when it is about this metric. */
export function explainText(lastAlert: string | null, metric: string | null): string {
  if (!lastAlert || !metric) return '';
  let a: { metric?: unknown; explain?: { detector?: unknown; groups?: Array<{ group: string; contribution: number }> } | null };
  try {
    a = JSON.parse(lastAlert) as typeof a;
  } catch {
    return '';
  }
  const groups = a.metric === metric && Array.isArray(a.explain?.groups) ? a.explain.groups.slice(0, 3) : [];
  if (groups.length === 0) return '';
  const signed = (x: number): string => `${x >= 0 ? '+' : '−'}${Math.abs(round(x, 3))}`;
  const detector = typeof a.explain!.detector === 'string' ? ` (${a.explain!.detector} head)` : '';
  return ` — top causes: ${groups.map((g) => `${g.group} ${signed(g.contribution)}`).join(', ')}${detector}`;
}

async function deviceAnomaly(r: Rule, c: ConditionContext): Promise<Observation[]> {
  const [where, args] = siteFilter(r);
  const rows = await c.store.all<{
    device: string;
    site: string;
    anomaly_score: number | null;
    anomaly_metric: string | null;
    last_alert: string | null;
  }>(`SELECT device, site, anomaly_score, anomaly_metric, last_alert FROM twins WHERE anomalous = 1${where}`, args);
  // The summary is the notification's text (every format): it names the alert's top-3 explanation.
  return rows.map((t) => ({
    key: t.device,
    site: t.site,
    device: t.device,
    value: t.anomaly_score,
    summary:
      `${t.device} is anomalous${t.anomaly_metric ? ` on ${t.anomaly_metric}` : ''}` +
      `${t.anomaly_score !== null ? ` (score ${round(t.anomaly_score, 3)})` : ''}${explainText(t.last_alert, t.anomaly_metric)}`,
    labels: t.anomaly_metric ? { metric: t.anomaly_metric } : ({} as Record<string, string>),
  }));
}

async function deviceOffline(r: Rule, c: ConditionContext): Promise<Observation[]> {
  const [where, args] = siteFilter(r);
  const limitMs = r.afterS! * 1000;
  const rows = await c.store.all<{ device: string; site: string; last_seen: number }>(
    `SELECT device, site, last_seen FROM twins WHERE last_seen < ?${where}`,
    [c.now - limitMs, ...args],
  );
  return rows.map((t) => {
    const ageS = Math.round((c.now - t.last_seen) / 1000);
    return {
      key: t.device,
      site: t.site,
      device: t.device,
      value: ageS,
      summary: `${t.device} not heard from for ${ageS} s (limit ${r.afterS} s)`,
    };
  });
}

async function siteStale(r: Rule, c: ConditionContext): Promise<Observation[]> {
  const [where, args] = siteFilter(r);
  const rows = await c.store.all<{ site: string; received: number; report: string }>(
    `SELECT site, received, report FROM site_status WHERE 1 = 1${where}`,
    args,
  );
  const out: Observation[] = [];
  for (const s of rows) {
    let intervalMs = 30_000;
    try {
      intervalMs = Number((JSON.parse(s.report) as { intervalMs?: unknown }).intervalMs) || intervalMs;
    } catch {
      // a report that does not parse is stale by the default interval
    }
    // Three missed heartbeats, as the site status page counts it, unless the rule says otherwise.
    const limitMs = r.afterS !== undefined ? r.afterS * 1000 : 3 * intervalMs;
    const ageMs = c.now - s.received;
    if (ageMs > limitMs) {
      const ageS = Math.round(ageMs / 1000);
      out.push(
        siteObservation(s.site, ageS, `no heartbeat from site ${s.site}'s collector for ${ageS} s (limit ${Math.round(limitMs / 1000)} s)`),
      );
    }
  }
  return out;
}

/** Each site's batch figures over the rule's window, for the sites with at least `minCount` readings in it. */
async function siteBatches(r: Rule, c: ConditionContext): Promise<{ site: string; passed: number; quarantined: number; total: number }[]> {
  const [where, args] = siteFilter(r);
  const rows = await c.store.all<{ site: string; passed: number; quarantined: number; failed: number }>(
    `SELECT site, coalesce(sum(passed), 0) AS passed, coalesce(sum(quarantined), 0) AS quarantined,
            coalesce(sum(quarantined), 0) + coalesce(sum(rejected), 0) AS failed
       FROM batches WHERE received >= ?${where} GROUP BY site`,
    [c.now - r.windowS! * 1000, ...args],
  );
  return rows
    .map((s) => ({
      site: s.site,
      passed: Number(s.passed),
      quarantined: Number(s.quarantined),
      total: Number(s.passed) + Number(s.failed),
    }))
    .filter((s) => s.total >= (r.minCount ?? 1));
}

async function dataQuality(r: Rule, c: ConditionContext): Promise<Observation[]> {
  const out: Observation[] = [];
  for (const s of await siteBatches(r, c)) {
    const score = s.passed / s.total;
    if (score < r.below!)
      out.push(
        siteObservation(
          s.site,
          round(score),
          `site ${s.site}: data quality ${round(score * 100, 2)} % over ${r.windowS} s (target ${round(r.below! * 100, 2)} %)`,
        ),
      );
  }
  return out;
}

async function quarantineRate(r: Rule, c: ConditionContext): Promise<Observation[]> {
  const out: Observation[] = [];
  for (const s of await siteBatches(r, c)) {
    const rate = s.quarantined / s.total;
    if (rate > (r.above ?? 0.05))
      out.push(
        siteObservation(
          s.site,
          round(rate),
          `site ${s.site}: ${round(rate * 100, 2)} % of readings quarantined over ${r.windowS} s (limit ${round((r.above ?? 0.05) * 100, 2)} %)`,
        ),
      );
  }
  return out;
}

async function lakeWriter(r: Rule, c: ConditionContext): Promise<Observation[]> {
  const s = c.lakeWriter();
  if (!s || s.failingSinceMs < r.afterS! * 1000) return [];
  const s2 = Math.round(s.failingSinceMs / 1000);
  return [
    {
      key: 'lakehouse',
      site: null,
      device: null,
      value: s2,
      summary: `lakehouse writes failing for ${s2} s: ${s.lastError ?? 'unknown error'}`,
    },
  ];
}

async function eventHubsLag(r: Rule, c: ConditionContext): Promise<Observation[]> {
  const lag = c.eventHubsLagS();
  if (lag === undefined || lag <= r.aboveS!) return [];
  return [
    {
      key: 'eventhubs',
      site: null,
      device: null,
      value: round(lag, 1),
      summary: `Event Hubs consumer ${round(lag, 1)} s behind (limit ${r.aboveS} s)`,
    },
  ];
}

async function apiP99(r: Rule, c: ConditionContext): Promise<Observation[]> {
  const { p99Ms, count } = await c.apiLatency.p99(c.now, r.windowS! * 1000);
  if (p99Ms === null || count < (r.minCount ?? 1) || p99Ms <= r.aboveMs!) return [];
  return [
    {
      key: 'api',
      site: null,
      device: null,
      value: round(p99Ms, 1),
      summary: `API p99 ${round(p99Ms, 1)} ms over ${r.windowS} s (${count} requests; limit ${r.aboveMs} ms)`,
    },
  ];
}

async function signal(r: Rule, c: ConditionContext): Promise<Observation[]> {
  const all = await c.signals.observe(r.signal!, c.now);
  return r.site ? all.filter((o) => o.site === r.site) : all;
}

const BY_KIND: Record<Rule['kind'], (r: Rule, c: ConditionContext) => Promise<Observation[]>> = {
  device_anomaly: deviceAnomaly,
  device_offline: deviceOffline,
  site_heartbeat_stale: siteStale,
  data_quality: dataQuality,
  quarantine_rate: quarantineRate,
  lake_writer_failing: lakeWriter,
  eventhubs_lag: eventHubsLag,
  api_p99: apiP99,
  signal,
};

export function observe(r: Rule, c: ConditionContext): Promise<Observation[]> {
  return BY_KIND[r.kind](r, c);
}
