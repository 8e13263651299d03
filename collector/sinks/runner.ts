/**
 * SinkRunner: one per sink. Owns batching (count, bytes, time), retry with jittered backoff, the
 * sink's durable cursor in the spool, and metrics. Several runners read one spool, each at its own
 * pace; a spool row is deleted only when every runner has moved past it, so a slow sink never
 * blocks a fast one and never loses what it has not yet sent.
 */
import { randomUUID } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import Type, { type Static } from 'typebox';
import { Backoff, backoffConfigSchema, sleep } from '../../common/backoff.js';
import { Section } from '../../common/config.js';
import { errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { counter, gauge, type Registry } from '../../common/metrics.js';
import { LANE_NORMAL, type SqliteOutbox } from '../../common/outbox/outbox.js';
import { PermanentSinkError, RetryableSinkError } from '../../common/errors.js';
import type { Sink, SinkBatch, SinkWriteResult } from './sink.js';

/** Section `runner` of the collector's config: the same for every sink. */
export const runnerConfigSchema = Section({
  batchMaxMessages: Type.Integer({ minimum: 1, default: 500 }),
  batchMaxBytes: Type.Integer({ minimum: 1024, default: 4 * 1024 * 1024 }),
  /** A partial batch is sent after this long. */
  flushIntervalMs: Type.Integer({ minimum: 0, default: 50 }),
  backoff: backoffConfigSchema({ initialMs: 200, maxMs: 15_000 }),
  /** At shutdown, how long to wait for a sink write in flight (then again after closing the sink). */
  stopGraceMs: Type.Integer({ minimum: 0, maximum: 60000, default: 5000 }),
});
export type RunnerConfig = Static<typeof runnerConfigSchema>;

export interface RunnerDeps {
  spool: SqliteOutbox;
  siteId: string;
  log: Logger;
  registry: Registry;
  /** Called after this runner's cursor moved, so the owner can release rows all runners passed. */
  onProgress: () => void;
  /**
   * Messages a sink refuses for good are appended here (`<sink>.jsonl`, fsynced before the cursor
   * moves past them), so an operator can inspect and replay them: refused is never silently gone.
   */
  deadLetterDir?: string;
}

export interface RunnerMetrics {
  sent: ReturnType<typeof counter>;
  rejected: ReturnType<typeof counter>;
  failures: ReturnType<typeof counter>;
  lag: ReturnType<typeof gauge>;
}

const metricsByRegistry = new WeakMap<Registry, RunnerMetrics>();

function runnerMetrics(registry: Registry): RunnerMetrics {
  let m = metricsByRegistry.get(registry);
  if (!m) {
    m = {
      sent: counter(registry, 'edgetwin_sink_messages_total', 'Messages accepted by a sink', ['sink']),
      rejected: counter(registry, 'edgetwin_sink_rejected_total', 'Messages a sink refused for good', ['sink', 'code']),
      failures: counter(registry, 'edgetwin_sink_failures_total', 'Failed batch attempts (retried)', ['sink']),
      lag: gauge(registry, 'edgetwin_sink_lag_rows', 'Spool rows this sink has not yet sent', ['sink']),
    };
    metricsByRegistry.set(registry, m);
  }
  return m;
}

export class SinkRunner {
  private stopped = false;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private readonly backoff: Backoff;
  private readonly abort = new AbortController();
  private readonly m: RunnerMetrics;
  private lastError: string | undefined;
  /** Set when stop() gave up waiting for a hung write: that write must not touch the spool any more. */
  private abandoned = false;
  private readonly maxIdStmt;
  cursor: number;

  constructor(
    readonly sink: Sink,
    private readonly cfg: RunnerConfig,
    private readonly deps: RunnerDeps,
  ) {
    this.backoff = new Backoff(cfg.backoff);
    this.cursor = deps.spool.meta.get(this.cursorKey);
    this.m = runnerMetrics(deps.registry);
    this.maxIdStmt = deps.spool.db.prepare<[], { id: number | null }>('SELECT max(id) AS id FROM queue');
  }

  private get cursorKey(): string {
    return `cursor:${this.sink.name}`;
  }

  get healthy(): { ok: boolean; lastError?: string } {
    return this.lastError ? { ok: false, lastError: this.lastError } : { ok: true };
  }

  start(): void {
    this.loop = this.run();
  }

  /** New rows were committed to the spool. */
  notify(): void {
    this.wake?.();
  }

  private waitForWork(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      const self = this;
      function done(): void {
        clearTimeout(t);
        self.wake = undefined;
        resolve();
      }
      this.wake = done;
    });
  }

  private async run(): Promise<void> {
    await this.connectWithRetry();
    while (!this.stopped) {
      let rows = this.deps.spool.read(LANE_NORMAL, this.cursor, this.cfg.batchMaxMessages, this.cfg.batchMaxBytes);
      if (rows.length === 0) {
        await this.waitForWork(1000);
        continue;
      }
      if (rows.length < this.cfg.batchMaxMessages && this.cfg.flushIntervalMs > 0) {
        // Give a partial batch a moment to fill: fewer, larger requests.
        await sleep(this.cfg.flushIntervalMs, this.abort.signal);
        rows = this.deps.spool.read(LANE_NORMAL, this.cursor, this.cfg.batchMaxMessages, this.cfg.batchMaxBytes);
      }
      if (this.stopped) break;
      const batch: SinkBatch = {
        batchId: randomUUID(),
        siteId: this.deps.siteId,
        messages: rows.map((r) => ({ id: r.id, device: r.key ?? '', payload: r.body })),
      };
      await this.deliver(batch);
    }
  }

  private async connectWithRetry(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.sink.connect();
        return;
      } catch (err) {
        this.lastError = errorMessage(err);
        this.deps.log.warn({ sink: this.sink.name, err: this.lastError }, 'sink connect failed, retrying');
        await sleep(this.backoff.next(), this.abort.signal);
      }
    }
  }

  /** Retries the same batch (same id) until it is accepted, refused for good, or the runner stops. */
  private async deliver(batch: SinkBatch): Promise<void> {
    const name = this.sink.name;
    while (!this.stopped) {
      try {
        const result = await this.sink.write(batch);
        // Delivered, but not recorded: it is sent again after the restart (a duplicate, never a loss).
        if (this.abandoned) return;
        this.accepted(batch, result);
        return;
      } catch (err) {
        if (err instanceof PermanentSinkError) return this.refused(batch, err);
        this.m.failures.inc({ sink: name });
        this.lastError = errorMessage(err);
        const hinted = err instanceof RetryableSinkError ? err.retryAfterMs : undefined;
        const wait = hinted ?? this.backoff.next();
        this.deps.log.warn({ sink: name, batchId: batch.batchId, retryInMs: wait, err: this.lastError }, 'sink write failed, will retry');
        await sleep(wait, this.abort.signal);
      }
    }
  }

  private accepted(batch: SinkBatch, result: SinkWriteResult): void {
    const name = this.sink.name;
    const rejected = result.rejected ?? [];
    if (rejected.length > 0) this.deadLetter(batch, rejected);
    for (const r of rejected) {
      this.m.rejected.inc({ sink: name, code: r.code });
      this.deps.log.warn({ sink: name, spoolId: r.id, code: r.code, err: r.message }, 'sink rejected a message');
    }
    this.m.sent.inc({ sink: name }, batch.messages.length - rejected.length);
    this.backoff.reset();
    this.lastError = undefined;
    this.advance(batch.messages[batch.messages.length - 1]!.id);
  }

  /**
   * A refused batch is halved until the refusal is pinned on single messages: one bad or oversize
   * message costs only itself, and everything around it is delivered. Sub-batch ids derive from
   * the parent's, so each part keeps a stable idempotency key across its own retries.
   */
  private async refused(batch: SinkBatch, err: PermanentSinkError): Promise<void> {
    if (batch.messages.length === 1) {
      const m = batch.messages[0]!;
      return this.accepted(batch, { rejected: [{ id: m.id, code: err.code, message: err.message }] });
    }
    this.deps.log.warn(
      { sink: this.sink.name, batchId: batch.batchId, messages: batch.messages.length, code: err.code, err: err.message },
      'sink refused a batch: splitting it',
    );
    const half = Math.ceil(batch.messages.length / 2);
    const parts = [batch.messages.slice(0, half), batch.messages.slice(half)];
    for (let i = 0; i < parts.length && !this.stopped; i++)
      await this.deliver({ ...batch, batchId: `${batch.batchId}.${i}`, messages: parts[i]! });
  }

  private deadLetter(batch: SinkBatch, rejected: NonNullable<SinkWriteResult['rejected']>): void {
    const dir = this.deps.deadLetterDir;
    if (!dir) return;
    const byId = new Map(batch.messages.map((m) => [m.id, m]));
    const at = new Date().toISOString();
    const lines = rejected
      .map(
        (r) =>
          JSON.stringify({
            at,
            sink: this.sink.name,
            spoolId: r.id,
            device: byId.get(r.id)?.device,
            code: r.code,
            message: r.message,
            payload: byId.get(r.id)?.payload,
          }) + '\n',
      )
      .join('');
    mkdirSync(dir, { recursive: true });
    const fd = openSync(join(dir, `${this.sink.name}.jsonl`), 'a', 0o600);
    try {
      writeSync(fd, lines);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  private advance(toId: number): void {
    this.cursor = toId;
    this.deps.spool.meta.set(this.cursorKey, toId);
    // Ids are never reused and rows past this cursor are kept for this sink, so this is its backlog.
    this.m.lag.set({ sink: this.sink.name }, Math.max(0, (this.maxIdStmt.get()?.id ?? toId) - toId));
    this.deps.onProgress();
  }

  /**
   * Stops after the write in flight, waiting at most cfg.stopGraceMs for it, then once more as long
   * after closing the sink (which should abort it). A destination that still hangs is abandoned.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    this.wake?.();
    const finished = async (): Promise<boolean> => {
      const timer = new AbortController();
      const out = await Promise.race([
        this.loop?.then(() => true) ?? Promise.resolve(true),
        sleep(this.cfg.stopGraceMs, timer.signal).then(() => false),
      ]);
      timer.abort();
      return out;
    };
    const done = await finished();
    await this.sink.close();
    if (!done && !(await finished())) {
      this.abandoned = true;
      this.deps.log.warn(
        { sink: this.sink.name, waitedMs: 2 * this.cfg.stopGraceMs },
        'sink write still hanging at shutdown: abandoned, it is resent after the restart',
      );
    }
  }
}
