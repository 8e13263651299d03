/**
 * The agent runner: sources emit readings into memory; every flushIntervalMs (or earlier when
 * flushMaxReadings are pending) they are scored, given their seq and committed to the outbox in
 * one transaction together with the seq counter; then the uplink is kicked. Each source runs under
 * a SourceSupervisor (restart with backoff, health); the runner owns memory bounds, outbox expiry,
 * metrics and the admin endpoints.
 */
import { join } from 'node:path';
import { AdminHttpServer, type AdminHttpConfig } from '../common/admin-http.js';
import { EdgetwinError, ErrorCodes, errorMessage, isEdgetwinError } from '../common/errors.js';
import { createLogger, type Logger } from '../common/log.js';
import { Gauge, counter, createRegistry, type Registry } from '../common/metrics.js';
import { LANE_NORMAL, LANE_PRIORITY, SqliteOutbox, type OutboxItem } from '../common/outbox.js';
import { encodeReading, readingProblem, type Reading } from '../common/record.js';
import type { AgentConfig } from './config.js';
import { bootIdentity, type Identity } from './identity.js';
import { MqttUplink } from './mqtt-uplink.js';
import { SourceSupervisor, type SourceHost, type SourceStatus } from './source-supervisor.js';
import { sourcesFromConfig } from './sources/from-config.js';
import { HttpReadingsSource } from './sources/http-readings.js';
import { AgentTwin } from './twin/agent-twin.js';
import type { Scorer, Source, SourceReading } from './types.js';

export interface AgentDeps {
  log?: Logger;
  registry?: Registry;
  /** Replaces the sources built from config (tests, benchmarks, embedding). */
  sources?: Source[];
  scorer?: Scorer;
  /** Replaces cfg.admin. */
  admin?: AdminHttpConfig;
}

export interface AgentHealth {
  ok: boolean;
  connected: boolean;
  epoch: number;
  outbox: { rows: number; bytes: number };
  sources: Record<string, SourceStatus>;
  /** Sources waiting for a restart, with their last error. */
  sourceErrors: Record<string, string>;
  [k: string]: unknown;
}

export class Agent {
  readonly log: Logger;
  readonly registry: Registry;
  readonly outbox: SqliteOutbox;
  readonly uplink: MqttUplink;
  readonly identity: Identity;
  readonly supervisors: SourceSupervisor[];
  /** Device twin: desired properties applied live, reported properties (agent/twin/); undefined when twin.enabled is false. */
  readonly twin: AgentTwin | undefined;
  private readonly running = new Set<SourceSupervisor>();
  private readonly disabled = new Set<string>();
  private started = false;
  private stopping = false;
  private stopped = false;
  private pending: SourceReading[] = [];
  private roomWaiters: (() => void)[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private lastExpire = Date.now();
  private flushChain: Promise<unknown> = Promise.resolve();
  private readonly admin: AdminHttpServer;
  private readonly rejectLog = new Map<string, { windowStart: number; logged: number; suppressed: number }>();
  private readonly m;
  adminPort: number | undefined;

  constructor(readonly cfg: AgentConfig, private readonly deps: AgentDeps = {}) {
    this.log = deps.log ?? createLogger(`agent:${cfg.deviceId}`, cfg.log);
    this.registry = deps.registry ?? createRegistry('agent', true);
    this.outbox = new SqliteOutbox(
      {
        path: cfg.outbox.path ?? join(cfg.stateDir, 'outbox.db'),
        maxBytes: cfg.outbox.maxBytes,
        maxFileBytes: cfg.outbox.maxBytes,
        maxAgeMs: cfg.outbox.maxAgeMs,
        // Appends at one end, reads and deletes at the other: 2 MiB of page cache is plenty (measured
        // in bench/agent.ts; better-sqlite3's default of 16 MiB would be a sixth of the RSS budget).
        cacheKiB: 2048,
        whenFull: cfg.outbox.whenFull,
        synchronous: cfg.outbox.synchronous,
      },
      { log: this.log, registry: this.registry, metricPrefix: 'edgetwin_outbox' },
    );
    this.identity = bootIdentity(this.outbox, this.log);
    this.uplink = new MqttUplink(cfg.uplink, { deviceId: cfg.deviceId, outbox: this.outbox, log: this.log, registry: this.registry });
    const host: SourceHost = {
      emit: (r) => this.emit(r),
      emitDurable: (r) => this.emitDurable(r),
      waitForRoom: () => this.waitForRoom(),
      log: this.log,
      onFailure: (name, err) => this.sourceFailed(name, err),
      onReject: (name, err) => this.sourceRejected(name, err),
    };
    this.supervisors = (deps.sources ?? sourcesFromConfig(cfg)).map((s) => new SourceSupervisor(s, host, cfg.sources.backoff));
    this.twin = cfg.twin.enabled ? new AgentTwin(this, cfg.twin, deps.scorer) : undefined;
    const r = this.registry;
    this.m = {
      produced: counter(r, 'edgetwin_agent_readings_total', 'Readings committed to the outbox'),
      sourceErrors: counter(r, 'edgetwin_agent_source_errors_total', 'Source failures (each is followed by a restart after backoff)', ['source']),
      rejected: counter(r, 'edgetwin_agent_rejected_total', 'Input records refused by a source (bad line, row, request)', ['source', 'code']),
      dropped: counter(r, 'edgetwin_agent_dropped_total', 'Readings lost before the outbox (memory: memoryMaxReadings reached; full: a commit larger than the cap; error: a failed write)', ['reason']),
    };
    const self = this;
    new Gauge({
      name: 'edgetwin_agent_pending_readings',
      help: 'Readings in memory waiting for their commit',
      registers: [r],
      collect() {
        this.set(self.pending.length);
      },
    });
    this.admin = new AdminHttpServer(deps.admin ?? cfg.admin, this.registry, () => this.health());
  }

  /** The sources, for the twin (names, live sampling interval). */
  get sourceList(): readonly Source[] {
    return this.supervisors.map((s) => s.source);
  }

  /** Port of the local readings endpoint, when that source runs. */
  get httpPort(): number | undefined {
    const s = this.supervisors.find((x) => x.source instanceof HttpReadingsSource)?.source as HttpReadingsSource | undefined;
    return s?.port || undefined;
  }

  async start(): Promise<void> {
    this.log.info(
      { deviceId: this.cfg.deviceId, epoch: this.identity.epoch, backlog: this.outbox.depth(), quarantinedTo: this.outbox.quarantinedTo },
      'agent starting',
    );
    this.adminPort = await this.admin.start();
    if (this.adminPort !== undefined) this.log.info({ url: `http://${(this.deps.admin ?? this.cfg.admin).host}:${this.adminPort}` }, 'admin endpoints: /metrics /healthz');
    this.uplink.start();
    // The desired state kept from the last run is applied before any source starts.
    await this.twin?.start();
    this.started = true;
    this.flushTimer = setInterval(() => this.tick(), this.cfg.outbox.flushIntervalMs);
    // Side by side: a source that is slow to start (a Modbus server that does not answer) holds up
    // no other. A failed start is the supervisor's to retry.
    await Promise.all(this.supervisors.filter((s) => !this.disabled.has(s.name)).map((s) => this.startSource(s)));
  }

  private async startSource(s: SourceSupervisor): Promise<void> {
    if (this.running.has(s)) return;
    this.running.add(s);
    await s.start();
  }

  /** Starts or stops a source live (desired property `sources`); before start() it decides whether the source starts. */
  async setSourceEnabled(name: string, enabled: boolean): Promise<void> {
    for (const s of this.supervisors) {
      if (s.name !== name) continue;
      if (enabled) {
        this.disabled.delete(name);
        if (this.started && !this.stopping) await this.startSource(s);
      } else {
        this.disabled.add(name);
        if (this.running.delete(s)) await s.stop();
      }
    }
  }

  private tick(): void {
    void this.flush().catch((err) => this.flushFailed(err));
    const maxAge = this.cfg.outbox.maxAgeMs;
    if (maxAge > 0 && Date.now() - this.lastExpire >= Math.min(60_000, Math.max(1000, maxAge / 10))) {
      this.lastExpire = Date.now();
      try {
        this.outbox.expire();
      } catch (err) {
        this.flushFailed(err);
      }
    }
  }

  /** Whether `n` more readings fit in memory; counts and logs the drop when not. */
  private admit(n: number): boolean {
    if (this.pending.length + n <= this.cfg.outbox.memoryMaxReadings) return true;
    this.m.dropped.inc({ reason: 'memory' }, n);
    this.log.warn({ code: ErrorCodes.STORE_FULL, dropped: n, pending: this.pending.length }, 'readings dropped: memoryMaxReadings reached while the outbox is full');
    return false;
  }

  emit(readings: SourceReading[]): void {
    if (this.stopped || readings.length === 0 || !this.admit(readings.length)) return;
    for (const r of readings) this.pending.push(r);
    if (this.pending.length >= this.cfg.outbox.flushMaxReadings) void this.flush().catch((err) => this.flushFailed(err));
  }

  /**
   * Commits these readings in one transaction of their own, after what is pending, and resolves
   * once they are durable. All or nothing: a full outbox (whenFull=block) refuses them whole with
   * EDGETWIN_ERR_STORE_FULL and keeps nothing, so the caller can retry without duplicates.
   */
  emitDurable(readings: SourceReading[]): Promise<void> {
    if (this.stopping) return Promise.reject(new EdgetwinError(ErrorCodes.CLOSED, 'agent is stopping'));
    const run = this.flushChain.then(async () => {
      await this.flushNow().catch((err) => this.flushFailed(err));
      await this.score(readings);
      try {
        this.commit(readings, 0, Infinity);
      } catch (err) {
        if (isEdgetwinError(err, ErrorCodes.STORE_FULL)) throw err;
        throw new EdgetwinError(ErrorCodes.STORE_CORRUPT, 'outbox write failed', { cause: err });
      }
      this.uplink.kick();
    });
    this.flushChain = run.catch(() => 0);
    return run;
  }

  /** Resolves when fewer than flushMaxReadings are waiting in memory (at once when stopping). */
  waitForRoom(): Promise<void> {
    if (this.pending.length < this.cfg.outbox.flushMaxReadings || this.stopping) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  private releaseRoom(): void {
    if (this.pending.length >= this.cfg.outbox.flushMaxReadings && !this.stopping) return;
    const w = this.roomWaiters;
    this.roomWaiters = [];
    for (const f of w) f();
  }

  private flushFailed(err: unknown): void {
    this.log.error({ code: isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL, err: errorMessage(err) }, 'outbox flush failed');
  }

  private sourceFailed(name: string, err: unknown): void {
    this.m.sourceErrors.inc({ source: name });
    this.log.error({ source: name, code: isEdgetwinError(err) ? err.code : ErrorCodes.SOURCE, err: errorMessage(err) }, 'source failed; restarting after backoff');
  }

  /** Logs a refused input record with its code; a flood of them logs at most 10 lines a second per source. */
  private sourceRejected(name: string, err: EdgetwinError): void {
    this.m.rejected.inc({ source: name, code: err.code });
    const now = Date.now();
    let st = this.rejectLog.get(name);
    if (!st || now - st.windowStart >= 1000) {
      st = { windowStart: now, logged: 0, suppressed: st?.suppressed ?? 0 };
      this.rejectLog.set(name, st);
    }
    if (st.logged >= 10) {
      st.suppressed++;
      return;
    }
    st.logged++;
    const suppressed = st.suppressed;
    st.suppressed = 0;
    this.log.warn({ source: name, code: err.code, ...err.details, ...(suppressed ? { suppressed } : {}) }, err.message);
  }

  /**
   * Commits pending readings; resolves to how many. Flushes are serialised so that seqs are
   * handed out in commit order even when scoring is asynchronous (onnxruntime runs the model on
   * this thread, but after a setImmediate, so other flushes could otherwise overtake it).
   */
  flush(): Promise<number> {
    const run = this.flushChain.then(() => this.flushNow());
    this.flushChain = run.catch(() => 0);
    return run;
  }

  private async flushNow(): Promise<number> {
    if (this.pending.length === 0) return 0;
    const batch = this.pending;
    this.pending = [];
    await this.score(batch);
    let done = 0;
    let failure: unknown;
    while (done < batch.length) {
      try {
        done += this.commit(batch, done);
      } catch (err) {
        failure = err;
        break;
      }
    }
    if (done < batch.length) this.keepOrDrop(batch, done, failure);
    if (done > 0) this.uplink.kick();
    this.releaseRoom();
    if (failure && !isEdgetwinError(failure, ErrorCodes.STORE_FULL)) throw new EdgetwinError(ErrorCodes.STORE_CORRUPT, 'outbox write failed', { cause: failure });
    return done;
  }

  private async score(batch: SourceReading[]): Promise<void> {
    if (!this.deps.scorer) return;
    try {
      await this.deps.scorer.score(batch);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'scorer failed; readings stored unscored');
    }
  }

  /**
   * Commits readings from `from` on, as many as fit one transaction (the outbox's txnMaxBytes
   * keeps its WAL inside the disk cap), with the seq counter; returns how many.
   */
  private commit(batch: SourceReading[], from: number, maxBytes = this.outbox.txnMaxBytes): number {
    const id = this.identity;
    const items: OutboxItem[] = [];
    let seq = id.nextSeq;
    let bytes = 0;
    let i = from;
    for (; i < batch.length && (items.length === 0 || bytes < maxBytes); i++) {
      const r = batch[i]! as Reading;
      r.seq = seq;
      // JSON turns NaN and ±Infinity into null: such a reading would poison its whole batch.
      const problem = readingProblem(r);
      if (problem) {
        delete (r as Partial<Reading>).seq;
        this.m.rejected.inc({ source: 'commit', code: ErrorCodes.BAD_PAYLOAD });
        this.log.warn({ code: ErrorCodes.BAD_PAYLOAD, metric: r.metric, value: String(r.value), problem }, 'invalid reading refused before commit');
        continue;
      }
      seq++;
      const body = encodeReading(r);
      bytes += body.length;
      items.push({ body, grp: id.epoch, lane: r.alert ? LANE_PRIORITY : LANE_NORMAL });
    }
    try {
      this.outbox.transaction(() => {
        this.outbox.appendInTx(items);
        this.outbox.meta.set('seq', seq - 1);
      });
    } catch (err) {
      for (let k = from; k < i; k++) delete (batch[k] as Partial<Reading>).seq;
      throw err;
    }
    id.nextSeq = seq;
    this.m.produced.inc(items.length);
    return i - from;
  }

  /** After a failed commit: with whenFull=block the rest waits in memory for the next flush; otherwise it is lost and said so. */
  private keepOrDrop(batch: SourceReading[], done: number, failure: unknown): void {
    const rest = batch.slice(done);
    if (isEdgetwinError(failure, ErrorCodes.STORE_FULL) && this.cfg.outbox.whenFull === 'block' && !this.stopping) {
      this.pending = rest.concat(this.pending);
      return;
    }
    if (isEdgetwinError(failure, ErrorCodes.STORE_FULL)) {
      this.m.dropped.inc({ reason: 'full' }, rest.length);
      this.log.warn({ code: ErrorCodes.STORE_FULL, dropped: rest.length }, 'readings dropped: one commit is larger than the outbox cap');
    } else {
      // A write error (disk gone, I/O error): these were never acknowledged to anyone, but count them.
      this.m.dropped.inc({ reason: 'error' }, rest.length);
    }
  }

  health(): AgentHealth {
    const sources = Object.fromEntries(this.supervisors.map((s) => [s.name, s.snapshot()]));
    const sourceErrors = Object.fromEntries(this.supervisors.filter((s) => !s.healthy).map((s) => [s.name, s.snapshot().lastError ?? 'failed']));
    return {
      ok: this.supervisors.every((s) => s.healthy),
      connected: this.uplink.connected,
      epoch: this.identity.epoch,
      outbox: this.outbox.depth(),
      sources,
      sourceErrors,
    };
  }

  /** Stops sources, commits what is pending, gives in-flight batches a moment, closes the outbox. */
  async stop(timeoutMs = 5000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.releaseRoom();
    for (const s of this.supervisors) await s.stop();
    this.running.clear();
    if (this.flushTimer) clearInterval(this.flushTimer);
    await this.flush().catch((err) => this.flushFailed(err));
    this.stopped = true;
    await this.twin?.stop();
    await this.uplink.stop(timeoutMs);
    await this.admin.stop();
    await this.deps.scorer?.close();
    this.outbox.close();
    this.log.info({ deviceId: this.cfg.deviceId }, 'agent stopped');
  }
}
