/**
 * CloudEvents: what `GET /v1/stream` delivers — the store's change feed (cloud/store/change-feed.ts).
 * A change is written in the transaction that makes it (`tx.emit`), so a subscriber never hears of a
 * change that could roll back, and every replica delivers the same events with the same ids.
 */
import type { ChangeFeed, ChangeListener } from '../store/change-feed.js';
import type { Change, Store } from '../store/store.js';

/** `site`: a collector's heartbeat (spool depth, sinks); its `device` is null. `alert`: an alert fired, resolved or was acknowledged (site '' for platform alerts). Add a type here when you emit a new one. */
export const EVENT_TYPES = ['twin', 'anomaly', 'desired', 'reported', 'site', 'alert', 'prediction', 'drift'] as const;
export type CloudEventType = (typeof EVENT_TYPES)[number];

/** One event; `id` is the change-feed id: global, increasing, the SSE `id` (resume with Last-Event-ID on any replica). */
export type CloudEvent = Change;

export type Subscriber = ChangeListener;

export class CloudEvents {
  constructor(
    private readonly store: Store,
    readonly feed: ChangeFeed,
  ) {}

  /** Connected subscribers on this replica. */
  get count(): number {
    return this.feed.count;
  }

  /**
   * Emits one event in a transaction of its own. A change to state should instead emit with
   * `tx.emit` in the transaction that makes it (so the event exists exactly when the change does).
   */
  async publish(type: string, site: string, device: string | null, data: Record<string, unknown>): Promise<void> {
    await this.store.tx(async (tx) => tx.emit({ type, site, device, data }));
  }

  /** Every event after `after` (default: from now on), each once, in order; resolves to the unsubscribe function. */
  subscribe(s: Subscriber, after?: number): Promise<() => void> {
    return this.feed.subscribe(s, after);
  }
}
