/**
 * The agent runner: sources emit readings into memory; every flushIntervalMs (or earlier when
 * flushMaxReadings are pending) they are scored, given their seq and committed to the outbox in
 * one transaction together with the seq counter; then the uplink is kicked. Each source runs under
 * a SourceSupervisor (restart with backoff, health); the runner owns memory bounds, outbox expiry,
 * metrics and the admin endpoints.
 */
import { AdminHttpServer, type AdminHttpConfig } from '../common/admin-http.js';
import { EdgetwinError, ErrorCodes, isEdgetwinError, storeErrorCode } from '../common/errors.js';
import { createLogger, type Logger } from '../common/log.js';
import { createRegistry, type Registry } from '../common/metrics.js';
import type { SqliteOutbox } from '../common/outbox/outbox.js';
import { StateLock } from '../common/state-lock.js';
import { timestampWindow } from '../common/wire/storable.js';
import type { AgentConfig } from './config.js';
import type { Identity } from './outbox/identity.js';
import { oldBacklogUplinks, openAgentOutbox, type OpenedOutbox } from './outbox/open.js';
import type { OldBacklogUplink } from './uplink/old-backlog.js';
import { MqttUplink } from './uplink/mqtt-uplink.js';
import { SourceSupervisor, type SourceHost, type SourceStatus } from './sources/supervisor.js';
import { sourcesFromConfig } from './sources/from-config.js';
import { HttpReadingsSource } from './sources/http-readings.js';
import { AgentTwin } from './twin/agent-twin.js';
import { DeviceMethods } from './methods/device-methods.js';
import { registerBuiltIns } from './methods/built-ins.js';
import { MetricNames } from './outbox/metric-names.js';
import { OutboxCommitter } from './outbox/committer.js';
import { RejectLog } from './sources/reject-log.js';
import { agentMetrics, type AgentMetrics } from './metrics.js';
import type { RefusedReading, Scorer, Source, SourceReading } from './types.js';

export interface AgentDeps {
  log?: Logger;
  registry?: Registry;
  /** Replaces the sources built from config (tests, benchmarks, embedding). */
  sources?: Source[];
  scorer?: Scorer;
  /** Replaces cfg.admin. */
  admin?: AdminHttpConfig;
  /** The state directory's lock, when the caller took it already (createAgent, before loading models). */
  lock?: StateLock;
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
  /** Direct methods (agent/methods/): built-ins registered; `methods.register` adds more. */
  readonly methods: DeviceMethods;
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
  private readonly rejectLog: RejectLog;
  private readonly committer: OutboxCommitter;
  private readonly m: AgentMetrics;
  private readonly lock: StateLock;
  private oldBacklogs: OldBacklogUplink[] = [];
  adminPort: number | undefined;

  constructor(
    readonly cfg: AgentConfig,
    private readonly deps: AgentDeps = {},
  ) {
    this.log = deps.log ?? createLogger(`agent:${cfg.deviceId}`, cfg.log);
    this.registry = deps.registry ?? createRegistry('agent', true);
    // One agent per state directory (common/state-lock.ts), taken before any file is opened.
    this.lock = deps.lock ?? StateLock.acquire(cfg.stateDir, `agent ${cfg.deviceId}`);
    let opened: OpenedOutbox;
    try {
      opened = openAgentOutbox(cfg, this.log, this.registry);
    } catch (err) {
      this.lock.release();
      throw err;
    }
    this.outbox = opened.outbox;
    this.identity = opened.identity;
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
    this.methods = new DeviceMethods(this.log.child({ part: 'methods' }), this.registry);
    registerBuiltIns(this.methods, this);
    this.m = agentMetrics(this.registry, () => this.pending.length);
    this.rejectLog = new RejectLog(this.log);
    // `limits.metricsPerDevice`: the names this device has, kept in the outbox.
    const metricNames = new MetricNames(this.outbox.db, cfg.deviceId, cfg.limits.metricsPerDevice);
    this.committer = new OutboxCommitter(
      this.outbox,
      this.identity,
      metricNames,
      timestampWindow(cfg.timestamps),
      (name, err) => this.sourceRejected(name, err),
      this.m.produced,
    );
    if (opened.discarded) this.m.dropped.inc({ reason: 'device_id_changed' }, opened.discarded);
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
    if (this.adminPort !== undefined)
      this.log.info({ url: `http://${(this.deps.admin ?? this.cfg.admin).host}:${this.adminPort}` }, 'admin endpoints: /metrics /healthz');
    this.uplink.start();
    this.oldBacklogs = oldBacklogUplinks(this.cfg, this.log);
    for (const b of this.oldBacklogs) b.start();
    // The desired state kept from the last run is applied before any source starts.
    await this.twin?.start();
    const mqtt = this.uplink.mqttClient;
    if (mqtt) this.methods.attach(mqtt);
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

  /** The active model's version, when a scorer runs. */
  get modelVersion(): string | undefined {
    return this.deps.scorer?.modelVersion;
  }

  /** Stops and starts one source now (the `restartSource` direct method); a source turned off by the twin stays off. */
  async restartSource(name: string): Promise<SourceStatus> {
    const s = this.supervisors.find((x) => x.name === name);
    if (!s) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no source "${name}"`);
    if (this.disabled.has(name))
      throw new EdgetwinError(ErrorCodes.CONFLICT, `source "${name}" is turned off by the desired property sources`);
    if (this.stopping) throw new EdgetwinError(ErrorCodes.CLOSED, 'agent is stopping');
    if (this.running.delete(s)) await s.stop();
    await this.startSource(s);
    return s.snapshot();
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
    this.log.warn(
      { code: ErrorCodes.STORE_FULL, dropped: n, pending: this.pending.length },
      'readings dropped: memoryMaxReadings reached while the outbox is full',
    );
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
  emitDurable(readings: SourceReading[]): Promise<RefusedReading[]> {
    if (this.stopping) return Promise.reject(new EdgetwinError(ErrorCodes.CLOSED, 'agent is stopping'));
    const run = this.flushChain.then(async () => {
      await this.flushNow().catch((err) => this.flushFailed(err));
      await this.score(readings);
      const refused: RefusedReading[] = [];
      try {
        this.committer.commit(readings, 0, Infinity, refused);
      } catch (err) {
        if (isEdgetwinError(err, ErrorCodes.STORE_FULL)) throw err;
        // A full disk or an I/O error is not corruption: the code says which it was.
        throw new EdgetwinError(storeErrorCode(err), 'outbox write failed', { cause: err });
      }
      this.uplink.kick();
      return refused;
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
    const code = isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL;
    // A full disk degrades /healthz until a commit succeeds again (its own code, never "corrupt").
    if (code === ErrorCodes.DISK_FULL) this.committer.diskFullSince ??= Date.now();
    this.log.error({ code, err }, 'outbox flush failed');
  }

  private sourceFailed(name: string, err: unknown): void {
    this.m.sourceErrors.inc({ source: name });
    this.log.error(
      { source: name, code: isEdgetwinError(err) ? err.code : ErrorCodes.SOURCE, err },
      'source failed; restarting after backoff',
    );
  }

  /** Logs a refused input record with its code; a flood of them logs at most 10 lines a second per source. */
  private sourceRejected(name: string, err: EdgetwinError): void {
    this.m.rejected.inc({ source: name, code: err.code });
    this.rejectLog.log(name, err);
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
        done += this.committer.commit(batch, done);
      } catch (err) {
        failure = err;
        break;
      }
    }
    if (done < batch.length) this.keepOrDrop(batch, done, failure);
    if (done > 0) this.uplink.kick();
    this.releaseRoom();
    if (failure && !isEdgetwinError(failure, ErrorCodes.STORE_FULL))
      throw new EdgetwinError(storeErrorCode(failure), 'outbox write failed', { cause: failure });
    return done;
  }

  private async score(batch: SourceReading[]): Promise<void> {
    if (!this.deps.scorer) return;
    try {
      await this.deps.scorer.score(batch);
    } catch (err) {
      this.log.warn({ err }, 'scorer failed; readings stored unscored');
    }
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
    const sourceErrors = Object.fromEntries(
      this.supervisors.filter((s) => !s.healthy).map((s) => [s.name, s.snapshot().lastError ?? 'failed']),
    );
    const diskFull =
      this.committer.diskFullSince === undefined
        ? {}
        : { diskFull: `${ErrorCodes.DISK_FULL}: outbox commits fail since ${new Date(this.committer.diskFullSince).toISOString()}` };
    return {
      ok: this.supervisors.every((s) => s.healthy) && this.committer.diskFullSince === undefined,
      ...diskFull,
      connected: this.uplink.connected,
      epoch: this.identity.epoch,
      outbox: this.outbox.depth(),
      sources,
      sourceErrors,
      ...this.oldBacklogHealth(),
    };
  }

  /** Backlogs still being delivered under a previous device id (outbox.onDeviceIdChange: send-as-old). */
  private oldBacklogHealth(): { oldBacklogs?: { deviceId: string; rows: number }[] } {
    const open = this.oldBacklogs.filter((b) => !b.delivered);
    return open.length ? { oldBacklogs: open.map((b) => ({ deviceId: b.deviceId, rows: b.rows })) } : {};
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
    this.methods.detach();
    await Promise.all([this.uplink.stop(timeoutMs), ...this.oldBacklogs.map((b) => b.stop())]);
    await this.admin.stop();
    await this.deps.scorer?.close();
    this.outbox.close();
    this.lock.release();
    this.log.info({ deviceId: this.cfg.deviceId }, 'agent stopped');
  }
}
