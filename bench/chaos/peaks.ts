/**
 * Watches the daemons' own /metrics during the run for the high-water marks that show back-pressure
 * did its job: the collectors' spool and the agents' outboxes filling up to their caps (then
 * holding acknowledgements rather than dropping), and drop counters that must stay at zero.
 */
import { request } from 'undici';
import type { ChaosCluster, ManagedDaemon } from './cluster.js';

export interface Peaks {
  spool_peak_bytes: number;
  outbox_peak_bytes: number;
  /** Sum over scrapes of the largest drop counters seen (daemons restart, so counters can reset). */
  outbox_dropped: number;
  spool_dropped: number;
}

/** Sum of every series of one metric in a Prometheus text exposition. */
export function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== ' ' && line[name.length] !== '{')) continue;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(v)) sum += v;
  }
  return sum;
}

export class PeakSampler {
  readonly peaks: Peaks = { spool_peak_bytes: 0, outbox_peak_bytes: 0, outbox_dropped: 0, spool_dropped: 0 };
  private readonly dropped = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(private readonly cluster: ChaosCluster) {}

  start(everyMs = 1000): void {
    this.timer = setInterval(() => void this.sample(), everyMs);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.sample();
  }

  private async scrape(d: ManagedDaemon): Promise<string | undefined> {
    const url = this.cluster.adminUrl(d);
    if (!url) return undefined;
    try {
      const r = await request(`${url}/metrics`, { headersTimeout: 2000, bodyTimeout: 2000 });
      return await r.body.text();
    } catch {
      return undefined; // killed between the check and the scrape
    }
  }

  private async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const p = this.peaks;
      for (const c of this.cluster.collectors) {
        const text = await this.scrape(c);
        if (!text) continue;
        p.spool_peak_bytes = Math.max(p.spool_peak_bytes, metricSum(text, 'edgetwin_spool_depth_bytes'));
        this.dropped.set(`${c.name}#${c.starts}`, metricSum(text, 'edgetwin_spool_dropped_total'));
      }
      for (const a of this.cluster.agents) {
        const text = await this.scrape(a);
        if (!text) continue;
        p.outbox_peak_bytes = Math.max(p.outbox_peak_bytes, metricSum(text, 'edgetwin_outbox_depth_bytes'));
        this.dropped.set(
          `${a.name}#${a.starts}`,
          metricSum(text, 'edgetwin_outbox_dropped_total') + metricSum(text, 'edgetwin_agent_dropped_total'),
        );
      }
      p.spool_dropped = [...this.dropped].filter(([k]) => k.startsWith('collector')).reduce((s, [, v]) => s + v, 0);
      p.outbox_dropped = [...this.dropped].filter(([k]) => k.startsWith('agent')).reduce((s, [, v]) => s + v, 0);
    } finally {
      this.busy = false;
    }
  }
}
