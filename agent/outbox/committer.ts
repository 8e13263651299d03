/**
 * The agent's one write path into its outbox: readings get their seq and are committed with the
 * seq counter in one transaction, refusing (before commit) whatever the lakehouse could not store
 * or what would take the device over `limits.metricsPerDevice`.
 */
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import type { Counter } from '../../common/metrics.js';
import { LANE_NORMAL, LANE_PRIORITY, type OutboxItem, type SqliteOutbox } from '../../common/outbox/outbox.js';
import { tooManyMetrics } from '../../common/wire/limits.js';
import { encodeReading, readingProblem, type Reading } from '../../common/wire/record.js';
import { unstorableReading, type TimestampWindow } from '../../common/wire/storable.js';
import type { RefusedReading, SourceReading } from '../types.js';
import type { Identity } from './identity.js';
import type { MetricNames } from './metric-names.js';

export class OutboxCommitter {
  /** Since when outbox commits fail with EDGETWIN_ERR_DISK_FULL (undefined: they do not); set by the runner. */
  diskFullSince: number | undefined;

  constructor(
    private readonly outbox: SqliteOutbox,
    private readonly identity: Identity,
    private readonly metricNames: MetricNames,
    /** Sample times the agent commits (config `timestamps`). */
    private readonly window: TimestampWindow,
    /** Counts and logs a reading refused before commit. */
    private readonly reject: (source: string, err: EdgetwinError) => void,
    private readonly produced: Counter<string>,
  ) {}

  /**
   * Commits readings from `from` on, as many as fit one transaction (the outbox's txnMaxBytes
   * keeps its WAL inside the disk cap), with the seq counter; returns how many.
   */
  commit(batch: SourceReading[], from: number, maxBytes = this.outbox.txnMaxBytes, refused?: RefusedReading[]): number {
    const id = this.identity;
    const items: OutboxItem[] = [];
    let seq = id.nextSeq;
    let bytes = 0;
    let i = from;
    const now = Date.now();
    for (; i < batch.length && (items.length === 0 || bytes < maxBytes); i++) {
      const r = batch[i]! as Reading;
      r.seq = seq;
      // Whatever the source, nothing the lakehouse cannot store is committed (a lone surrogate, NaN,
      // a sample time outside `timestamps`): the collector would refuse the whole batch it rides in.
      const unstorable = unstorableReading(r, this.window, now);
      const problem = unstorable ?? readingProblem(r);
      // Derived readings (kind set) never become twin metrics: only measurements count against the cap.
      const over = !problem && r.kind === undefined && !this.metricNames.take(r.metric);
      if (problem || over) {
        delete (r as Partial<Reading>).seq;
        const err = over
          ? tooManyMetrics(r.metric, this.metricNames.max, 'refused before commit')
          : new EdgetwinError(unstorable ? ErrorCodes.BAD_VALUE : ErrorCodes.BAD_PAYLOAD, `reading refused before commit: ${problem}`, {
              details: { metric: r.metric },
            });
        this.reject('commit', err);
        refused?.push({ index: i, err });
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
        this.metricNames.record();
      });
    } catch (err) {
      this.metricNames.settle(false);
      for (let k = from; k < i; k++) delete (batch[k] as Partial<Reading>).seq;
      throw err;
    }
    this.metricNames.settle(true);
    id.nextSeq = seq;
    this.diskFullSince = undefined;
    this.produced.inc(items.length);
    return i - from;
  }
}
