/**
 * SourceSupervisor: runs one Source and keeps it running. A source that fails (start throws, or
 * it calls ctx.fail) is stopped and started again after an exponential, jittered backoff; its
 * state and last error show in /healthz. A failing source never touches the others: each has its
 * own supervisor, and nothing a source does can throw into the agent.
 */
import { Backoff, type BackoffConfig } from '../../common/backoff.js';
import { errorMessage, type EdgetwinError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { RefusedReading, Source, SourceContext, SourceReading } from '../types.js';

export type SourceState = 'starting' | 'running' | 'backoff' | 'finished' | 'stopped';

export interface SourceStatus {
  state: SourceState;
  /** Failures since the agent started. */
  failures: number;
  /** Input records rejected since the agent started. */
  rejected: number;
  lastError?: string;
  lastErrorAt?: string;
  /** When the next start attempt is due (state backoff). */
  retryAt?: string;
}

/** What a supervisor needs from the agent. */
export interface SourceHost {
  emit(readings: SourceReading[]): void;
  emitDurable(readings: SourceReading[]): Promise<RefusedReading[] | void>;
  waitForRoom(): Promise<void>;
  log: Logger;
  onFailure(source: string, err: unknown): void;
  onReject(source: string, err: EdgetwinError): void;
}

export class SourceSupervisor {
  private status: SourceStatus = { state: 'stopped', failures: 0, rejected: 0 };
  private generation = 0;
  private abort: AbortController | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly backoff: Backoff;
  private startedAt = 0;
  private stopping = false;

  constructor(
    readonly source: Source,
    private readonly host: SourceHost,
    backoff: BackoffConfig,
  ) {
    this.backoff = new Backoff(backoff);
  }

  get name(): string {
    return this.source.name;
  }

  /** A source waiting for its retry is unhealthy; finished and running ones are fine. */
  get healthy(): boolean {
    return this.status.state !== 'backoff';
  }

  snapshot(): SourceStatus {
    return { ...this.status };
  }

  async start(): Promise<void> {
    this.stopping = false;
    const gen = ++this.generation;
    const abort = new AbortController();
    this.abort = abort;
    this.status.state = 'starting';
    delete this.status.retryAt;
    this.startedAt = Date.now();
    const current = (): boolean => gen === this.generation && !this.stopping;
    const log = this.host.log.child({ source: this.name });
    const ctx: SourceContext = {
      emit: (readings) => {
        if (readings.length === 0) return;
        this.host.emit(readings);
        // Data flowing again is what proves a restarted source healthy.
        if (current()) this.backoff.reset();
      },
      emitDurable: (readings) => this.host.emitDurable(readings),
      fail: (err) => {
        if (current()) void this.failed(err);
      },
      reject: (err) => {
        this.status.rejected++;
        this.host.onReject(this.name, err);
      },
      finished: () => {
        if (!current()) return;
        this.status.state = 'finished';
        log.info('source finished');
      },
      waitForRoom: () => this.host.waitForRoom(),
      log,
      signal: abort.signal,
    };
    try {
      await this.source.start(ctx);
      if (current() && this.status.state === 'starting') this.status.state = 'running';
    } catch (err) {
      if (current()) await this.failed(err);
    }
  }

  private async failed(err: unknown): Promise<void> {
    // From here on, calls from the failed run's context are stale and ignored.
    const gen = ++this.generation;
    this.status.failures++;
    this.status.lastError = errorMessage(err);
    this.status.lastErrorAt = new Date().toISOString();
    this.host.onFailure(this.name, err);
    // A source that ran fine for a long time starts its backoff from the beginning.
    if (Date.now() - this.startedAt > 60_000) this.backoff.reset();
    const delay = this.backoff.next();
    this.status.state = 'backoff';
    this.status.retryAt = new Date(Date.now() + delay).toISOString();
    this.abort?.abort();
    await this.stopSource();
    if (gen !== this.generation || this.stopping) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.stopping) void this.start();
    }, delay);
  }

  private async stopSource(): Promise<void> {
    try {
      await this.source.stop();
    } catch (err) {
      this.host.log.warn({ source: this.name, err }, 'source stop failed');
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.generation++;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.abort?.abort();
    await this.stopSource();
    if (this.status.state !== 'finished') this.status.state = 'stopped';
  }
}
