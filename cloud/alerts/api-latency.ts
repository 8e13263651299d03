/**
 * The API's p99 latency over a sliding window, from the request-duration histogram the server
 * already keeps (`edgetwin_cloud_http_request_duration_seconds`, streaming routes excluded). Each
 * evaluation snapshots the cumulative bucket counts; the window's p99 comes from the difference
 * between now and the snapshot `windowS` ago, interpolated inside the bucket like Prometheus'
 * histogram_quantile — the same figure the Prometheus rule in deploy/prometheus computes.
 */
import type { Registry } from '../../common/metrics.js';

export const API_LATENCY_METRIC = 'edgetwin_cloud_http_request_duration_seconds';

interface Snapshot {
  at: number;
  /** Cumulative count per upper bound (seconds), ascending; +Inf last. */
  buckets: [number, number][];
}

export class ApiLatencyWindow {
  private readonly snaps: Snapshot[] = [];

  constructor(
    private readonly registry: Registry,
    private readonly maxWindowMs = 3_600_000,
  ) {}

  private async snapshot(now: number): Promise<Snapshot> {
    const metric = this.registry.getSingleMetric(API_LATENCY_METRIC);
    const byLe = new Map<number, number>();
    if (metric) {
      const data = await metric.get();
      for (const v of data.values) {
        if (!(v as { metricName?: string }).metricName?.endsWith('_bucket')) continue;
        const le = v.labels['le'] === '+Inf' ? Infinity : Number(v.labels['le']);
        byLe.set(le, (byLe.get(le) ?? 0) + v.value);
      }
    }
    return { at: now, buckets: [...byLe.entries()].sort((a, b) => a[0] - b[0]) };
  }

  /** Takes this evaluation's snapshot and answers p99 (ms) and the request count over the last `windowMs`. */
  async p99(now: number, windowMs: number): Promise<{ p99Ms: number | null; count: number }> {
    const cur = await this.snapshot(now);
    this.snaps.push(cur);
    while (this.snaps.length > 2 && this.snaps[1]!.at <= now - this.maxWindowMs) this.snaps.shift();
    // The newest snapshot at least windowMs old (or the oldest one while the window is still filling).
    let base: Snapshot | undefined;
    for (const s of this.snaps) if (s.at <= now - windowMs) base = s;
    base ??= this.snaps[0]!;
    if (base === cur) return { p99Ms: null, count: 0 };
    const before = new Map(base.buckets);
    const diff = cur.buckets.map(([le, n]) => [le, n - (before.get(le) ?? 0)] as [number, number]);
    return quantile(0.99, diff);
  }
}

/** histogram_quantile over cumulative buckets [(le, count)], in ms. */
export function quantile(q: number, buckets: [number, number][]): { p99Ms: number | null; count: number } {
  const total = buckets.length ? buckets[buckets.length - 1]![1] : 0;
  if (total <= 0) return { p99Ms: null, count: 0 };
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      // Beyond the last finite bucket: its bound is the best there is (as Prometheus answers).
      if (le === Infinity) return { p99Ms: prevLe * 1000, count: total };
      const inBucket = count - prevCount;
      const frac = inBucket > 0 ? (rank - prevCount) / inBucket : 1;
      return { p99Ms: (prevLe + (le - prevLe) * frac) * 1000, count: total };
    }
    prevLe = le;
    prevCount = count;
  }
  return { p99Ms: prevLe * 1000, count: total };
}
