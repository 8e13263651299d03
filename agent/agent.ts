/**
 * The agent runner: sources emit readings into memory; every flushIntervalMs (or earlier when
 * flushMaxReadings are pending) they are scored, given their seq and committed to the outbox in
 * one transaction together with the seq counter; then the uplink is kicked.
 */
import { join } from 'node:path';
import { AdminHttpServer, type AdminHttpConfig } from '../common/admin-http.js';
import { EdgetwinError, ErrorCodes, errorMessage, isEdgetwinError } from '../common/errors.js';
import { createLogger, type Logger } from '../common/log.js';
import { counter, createRegistry, type Registry } from '../common/metrics.js';
import { LANE_NORMAL, LANE_PRIORITY, SqliteOutbox, type OutboxItem } from '../common/outbox.js';
import { encodeReading, type Reading } from '../common/record.js';
import type { AgentConfig } from './config.js';
import { bootIdentity, type Identity } from './identity.js';
import { MqttUplink } from './mqtt-uplink.js';
import { SimulatorSource } from './sources/simulator.js';
import type { Scorer, Source, SourceReading } from './types.js';

export interface AgentDeps {
  log?: Logger;
  registry?: Registry;
  /** Replaces the sources built from config (tests, benchmarks, embedding). */
  sources?: Source[];
  scorer?: Scorer;
  admin?: AdminHttpConfig;
}

export class Agent {
  readonly log: Logger;
  readonly registry: Registry;
  readonly outbox: SqliteOutbox;
  readonly uplink: MqttUplink;
  readonly identity: Identity;
  private readonly sources: Source[];
  private readonly abort = new AbortController();
  private pending: SourceReading[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly sourceErrors = new Map<string, string>();
  private readonly admin: AdminHttpServer | undefined;
  private readonly mProduced;
  private readonly mSourceErrors;
  private stopped = false;
  private flushChain: Promise<unknown> = Promise.resolve();

  constructor(readonly cfg: AgentConfig, private readonly deps: AgentDeps = {}) {
    this.log = deps.log ?? createLogger(`agent:${cfg.deviceId}`, cfg.log);
    this.registry = deps.registry ?? createRegistry('agent', true);
    this.outbox = new SqliteOutbox(
      {
        path: cfg.outbox.path ?? join(cfg.stateDir, 'outbox.db'),
        maxBytes: cfg.outbox.maxBytes,
        whenFull: cfg.outbox.whenFull,
        synchronous: cfg.outbox.synchronous,
      },
      { log: this.log, registry: this.registry, metricPrefix: 'edgetwin_outbox' },
    );
    this.identity = bootIdentity(this.outbox);
    this.uplink = new MqttUplink(cfg.uplink, { deviceId: cfg.deviceId, outbox: this.outbox, log: this.log, registry: this.registry });
    this.sources = deps.sources ?? this.sourcesFromConfig();
    this.mProduced = counter(this.registry, 'edgetwin_agent_readings_total', 'Readings committed to the outbox');
    this.mSourceErrors = counter(this.registry, 'edgetwin_agent_source_errors_total', 'Source failures', ['source']);
    if (deps.admin?.enabled) this.admin = new AdminHttpServer(deps.admin, this.registry, () => this.health());
  }

  private sourcesFromConfig(): Source[] {
    const out: Source[] = [];
    if (this.cfg.sources.simulator.enabled) out.push(new SimulatorSource(this.cfg.sources.simulator, this.cfg.deviceId));
    return out;
  }

  async start(): Promise<void> {
    this.log.info({ deviceId: this.cfg.deviceId, epoch: this.identity.epoch, backlog: this.outbox.depth() }, 'agent starting');
    await this.admin?.start();
    this.uplink.start();
    for (const s of this.sources) {
      const ctx = {
        emit: (readings: SourceReading[]) => this.emit(readings),
        fail: (err: unknown) => this.sourceFailed(s.name, err),
        signal: this.abort.signal,
      };
      try {
        await s.start(ctx);
      } catch (err) {
        this.sourceFailed(s.name, err);
      }
    }
    this.flushTimer = setInterval(() => void this.flush().catch((err) => this.flushFailed(err)), this.cfg.outbox.flushIntervalMs);
  }

  emit(readings: SourceReading[]): void {
    if (this.stopped) return;
    for (const r of readings) this.pending.push(r);
    if (this.pending.length >= this.cfg.outbox.flushMaxReadings) void this.flush().catch((err) => this.flushFailed(err));
  }

  private flushFailed(err: unknown): void {
    this.log.error({ code: isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL, err: errorMessage(err) }, 'outbox flush failed');
  }

  private sourceFailed(name: string, err: unknown): void {
    this.sourceErrors.set(name, errorMessage(err));
    this.mSourceErrors.inc({ source: name });
    this.log.error({ source: name, code: isEdgetwinError(err) ? err.code : ErrorCodes.SOURCE, err: errorMessage(err) }, 'source failed');
  }

  /**
   * Commits pending readings; resolves to how many. Flushes are serialised so that seqs are
   * handed out in commit order even when scoring is asynchronous (onnxruntime runs off-thread).
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
    if (this.deps.scorer) {
      try {
        await this.deps.scorer.score(batch);
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, 'scorer failed; readings stored unscored');
      }
    }
    const id = this.identity;
    const items: OutboxItem[] = new Array(batch.length);
    let seq = id.nextSeq;
    for (let i = 0; i < batch.length; i++) {
      const r = batch[i]! as Reading;
      r.seq = seq++;
      items[i] = { body: encodeReading(r), grp: id.epoch, lane: r.alert ? LANE_PRIORITY : LANE_NORMAL };
    }
    try {
      this.outbox.transaction(() => {
        this.outbox.appendInTx(items);
        this.outbox.meta.set('seq', seq - 1);
      });
      id.nextSeq = seq;
      this.mProduced.inc(batch.length);
    } catch (err) {
      // whenFull=block: keep the readings in memory and retry at the next flush.
      if (isEdgetwinError(err, ErrorCodes.STORE_FULL)) {
        for (const r of batch) delete (r as Partial<Reading>).seq;
        this.pending = batch.concat(this.pending);
        return 0;
      }
      throw new EdgetwinError(ErrorCodes.STORE_CORRUPT, 'outbox write failed', { cause: err });
    }
    this.uplink.kick();
    return batch.length;
  }

  health(): { ok: boolean; connected: boolean; outbox: { rows: number; bytes: number }; sourceErrors: Record<string, string>; epoch: number } {
    return {
      ok: this.sourceErrors.size === 0,
      connected: this.uplink.connected,
      outbox: this.outbox.depth(),
      sourceErrors: Object.fromEntries(this.sourceErrors),
      epoch: this.identity.epoch,
    };
  }

  /** Stops sources, commits what is pending, gives in-flight batches a moment, closes the outbox. */
  async stop(timeoutMs = 5000): Promise<void> {
    if (this.stopped) return;
    this.abort.abort();
    for (const s of this.sources) await s.stop();
    if (this.flushTimer) clearInterval(this.flushTimer);
    await this.flush().catch((err) => this.flushFailed(err));
    this.stopped = true;
    await this.uplink.stop(timeoutMs);
    await this.admin?.stop();
    await this.deps.scorer?.close();
    this.outbox.close();
    this.log.info({ deviceId: this.cfg.deviceId }, 'agent stopped');
  }
}
