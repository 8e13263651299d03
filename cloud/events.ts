/**
 * CloudEvents: the in-process bus behind `GET /v1/stream`. Ingest and operator writes publish
 * after their transaction commits, so a subscriber never hears of a change that could roll back.
 */
/** `site`: a collector's heartbeat (spool depth, sinks); its `device` is null. */
export const EVENT_TYPES = ['twin', 'anomaly', 'desired', 'reported', 'site'] as const;
export type CloudEventType = (typeof EVENT_TYPES)[number];

export interface CloudEvent {
  /** Increases by one per event in this process (the SSE `id`). */
  id: number;
  type: CloudEventType;
  site: string;
  device: string | null;
  at: string;
  data: Record<string, unknown>;
}

export type Subscriber = (e: CloudEvent) => void;

export class CloudEvents {
  private readonly subscribers = new Set<Subscriber>();
  private lastId = 0;

  /** True when someone listens: publishers skip building events nobody reads. */
  get active(): boolean {
    return this.subscribers.size > 0;
  }

  get count(): number {
    return this.subscribers.size;
  }

  publish(type: CloudEventType, site: string, device: string | null, data: Record<string, unknown>): void {
    if (this.subscribers.size === 0) return;
    const e: CloudEvent = { id: ++this.lastId, type, site, device, at: new Date().toISOString(), data };
    for (const s of this.subscribers) s(e);
  }

  subscribe(s: Subscriber): () => void {
    this.subscribers.add(s);
    return () => this.subscribers.delete(s);
  }
}
