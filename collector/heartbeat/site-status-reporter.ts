/**
 * SiteStatusReporter: the site heartbeat. Every `siteStatus.intervalMs` the collector tells the
 * cloud how it is doing — spool depth, connected devices, each sink's backlog, its version — with
 * `PUT /v1/sites/{site}/status` and the site token it already uses for ingest. The cloud keeps the
 * newest report per site and the dashboard shows it, so an operator sees a site buffering (its
 * uplink down, its sink refusing) or silent (the heartbeat stale) without reaching the site.
 *
 * A report that fails is not retried: the next one, an interval later, carries fresher figures.
 * Every request runs under one deadline of `timeoutMs` on the collector's shared cloud client
 * (collector/cloud/cloud-client.ts; common/deadline-pool.ts: an undici request whose connection
 * was accepted and dropped at once can otherwise stay pending forever).
 */
import Type, { type Static } from 'typebox';
import { sleep } from '../../common/backoff.js';
import { Section } from '../../common/config.js';
import { DeadlineError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { counter, gauge, type Registry } from '../../common/metrics.js';
import { EDGETWIN_VERSION } from '../../common/version.js';
import type { SiteStatusReport } from '../../common/wire/site-status.js';
import type { CloudClient } from '../cloud/cloud-client.js';

export const siteStatusConfigSchema = Section({
  enabled: Type.Boolean({ default: true }),
  /** How often the heartbeat is sent; the cloud calls the site stale after three missed ones. */
  intervalMs: Type.Integer({ minimum: 100, maximum: 3_600_000, default: 10_000 }),
  /** Deadline of one report (connect, headers and body). */
  timeoutMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 5000 }),
});
export type SiteStatusConfig = Static<typeof siteStatusConfigSchema>;

/** What the collector hands over at each beat; the reporter adds the envelope fields (the body: common/wire/site-status.ts). */
export type SiteStatusSnapshot = Omit<SiteStatusReport, 'v' | 'at' | 'collectorVersion' | 'intervalMs' | 'uptimeS'>;

export const COLLECTOR_VERSION = EDGETWIN_VERSION;

export class SiteStatusReporter {
  private readonly path: string;
  private readonly abort = new AbortController();
  private readonly started = Date.now();
  private loop: Promise<void> | undefined;
  private failing = false;
  /** The last report the cloud accepted (tests and `health()`). */
  lastSent: SiteStatusReport | undefined;
  private readonly mReports;
  private readonly mFailing;

  constructor(
    private readonly cfg: SiteStatusConfig & { siteId: string },
    private readonly deps: { cloud: CloudClient; log: Logger; registry: Registry; snapshot: () => SiteStatusSnapshot },
  ) {
    this.path = `/v1/sites/${encodeURIComponent(cfg.siteId)}/status`;
    this.mReports = counter(deps.registry, 'edgetwin_site_status_reports_total', 'Site heartbeats sent to the cloud, by result', [
      'result',
    ]);
    this.mFailing = gauge(deps.registry, 'edgetwin_site_status_failing', '1 while site heartbeats fail, else 0');
  }

  get healthy(): boolean {
    return !this.failing;
  }

  start(): void {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      try {
        await this.reportOnce();
        if (this.failing) this.deps.log.info('site heartbeat reaches the cloud again');
        this.failing = false;
        this.mFailing.set(0);
      } catch (err) {
        if (signal.aborted) break;
        // Warn once per outage, then stay quiet: an offline site fails every interval for hours.
        this.deps.log[this.failing ? 'debug' : 'warn']({ err }, 'site heartbeat failed; the next one follows at the interval');
        this.failing = true;
        this.mFailing.set(1);
      }
      await sleep(this.cfg.intervalMs, signal);
    }
  }

  /** Sends one report now; throws when the cloud does not accept it. */
  async reportOnce(): Promise<SiteStatusReport> {
    const body: SiteStatusReport = {
      v: 1,
      at: new Date().toISOString(),
      collectorVersion: COLLECTOR_VERSION,
      intervalMs: this.cfg.intervalMs,
      uptimeS: Math.floor((Date.now() - this.started) / 1000),
      ...this.deps.snapshot(),
    };
    try {
      const res = await this.deps.cloud.request({
        method: 'PUT',
        path: this.path,
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(body),
        timeoutMs: this.cfg.timeoutMs,
        what: 'site heartbeat',
        signal: this.abort.signal,
      });
      if (res.statusCode !== 200) throw new Error(`cloud answered ${res.statusCode}: ${res.body.toString('utf8').slice(0, 200)}`);
      this.mReports.inc({ result: 'ok' });
      this.lastSent = body;
      return body;
    } catch (err) {
      this.mReports.inc({ result: 'error' });
      if (err instanceof DeadlineError && err.timedOut)
        throw new Error(`no answer within siteStatus.timeoutMs (${this.cfg.timeoutMs} ms)`, { cause: err });
      throw err;
    }
  }

  async stop(): Promise<void> {
    // The abort ends a report in flight at once (it is not worth waiting for); the shared client stays open.
    this.abort.abort();
    await this.loop?.catch(() => undefined);
  }
}
/** The collector's figures for one heartbeat: spool depth, each sink's backlog behind the newest spooled row. */
export function collectorSnapshot(parts: {
  spool: { depth(): { rows: number; bytes: number }; lastId(): number };
  maxBytes: number;
  runners: readonly { sink: { name: string }; cursor: number; healthy: { ok: boolean; lastError?: string } }[];
  clients: number;
  twinFeed?: 'ok' | 'failing' | 'off' | undefined;
}): SiteStatusSnapshot {
  const depth = parts.spool.depth();
  const last = parts.spool.lastId();
  const sinks: SiteStatusReport['sinks'] = {};
  for (const r of parts.runners) {
    const h = r.healthy;
    // Rows dropped when full (whenFull drop_oldest) leave gaps in the ids: never claim more than the spool holds.
    sinks[r.sink.name] = {
      ok: h.ok,
      lagRows: Math.min(depth.rows, Math.max(0, last - r.cursor)),
      ...(h.lastError ? { lastError: h.lastError.slice(0, 500) } : {}),
    };
  }
  return {
    spool: { rows: depth.rows, bytes: depth.bytes, maxBytes: parts.maxBytes },
    devices: { connected: parts.clients },
    sinks,
    ...(parts.twinFeed ? { twin: { feed: parts.twinFeed } } : {}),
  };
}
