/**
 * The known set of readings: device d's n-th reading has value n (1, 2, 3, …) and metric m<n%3>,
 * posted in order to the agent's local ingest (`POST /v1/readings`), which answers 200 only once
 * the readings are committed to the outbox. Every range posted lands in the ledger as
 *   acked     — 200 with all accepted: the system owes us these, exactly once;
 *   in_doubt  — the request failed on the wire (agent killed mid-request): stored at most once,
 *               never posted again (a resend would be a new reading to the agent, not a retry).
 * A 503 (outbox full, agent stopping) means nothing was stored: the same range is posted again.
 */
import { request, Agent as HttpAgent } from 'undici';

export type LedgerStatus = 'acked' | 'in_doubt';

export interface LedgerEntry {
  device: string;
  lo: number;
  hi: number;
  status: LedgerStatus;
}

export interface LoadOptions {
  devices: string[];
  /** Readings per device. */
  quotas: number[];
  batch: number;
  /** Spread the sending over this long (catching up at full speed when held back). */
  paceMs: number;
  url(i: number): string | undefined;
}

export interface LoadFigures {
  sent: number;
  acked: number;
  inDoubt: number;
  retried503: number;
  /** Answers the contract does not allow (anything but 200 with every reading accepted, or 503). */
  unexpected: number;
  unexpectedSamples: string[];
  maxAckMs: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class LoadSender {
  readonly ledger: LedgerEntry[] = [];
  readonly figures: LoadFigures = { sent: 0, acked: 0, inDoubt: 0, retried503: 0, unexpected: 0, unexpectedSamples: [], maxAckMs: 0 };
  /** Readings posted so far per device (the next value is next[i] + 1). */
  readonly next: number[];
  private readonly http = new HttpAgent({ connections: 4, headersTimeout: 300_000, bodyTimeout: 300_000, keepAliveTimeout: 2000 });
  private t0 = 0;
  private stopped = false;

  constructor(private readonly o: LoadOptions) {
    this.next = o.devices.map(() => 0);
  }

  async run(): Promise<void> {
    this.t0 = Date.now();
    await Promise.all(this.o.devices.map((_, i) => this.device(i)));
    await this.http.close();
  }

  stop(): void {
    this.stopped = true;
  }

  private unexpected(what: string): void {
    this.figures.unexpected++;
    if (this.figures.unexpectedSamples.length < 10) this.figures.unexpectedSamples.push(what);
  }

  private async device(i: number): Promise<void> {
    const device = this.o.devices[i]!;
    const quota = this.o.quotas[i]!;
    const perMs = quota / this.o.paceMs;
    let backoff = 50;
    while (this.next[i]! < quota && !this.stopped) {
      const ahead = this.next[i]! / perMs - (Date.now() - this.t0);
      if (ahead > 0) await sleep(Math.min(ahead, 1000));
      const url = this.o.url(i);
      if (!url) {
        await sleep(50);
        continue;
      }
      const lo = this.next[i]! + 1;
      const hi = Math.min(quota, lo + this.o.batch - 1);
      const ts = Date.now();
      const readings = [];
      for (let n = lo; n <= hi; n++) readings.push({ ts, metric: `m${n % 3}`, value: n, unit: 'u' });
      let status: number;
      let text: string;
      try {
        const r = await request(url, {
          method: 'POST',
          dispatcher: this.http,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ readings }),
        });
        status = r.statusCode;
        text = await r.body.text();
      } catch {
        this.settle(i, { device, lo, hi, status: 'in_doubt' });
        continue;
      }
      if (status === 503) {
        this.figures.retried503++;
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 1000);
        continue;
      }
      backoff = 50;
      let accepted = -1;
      try {
        accepted = (JSON.parse(text) as { accepted?: number }).accepted ?? -1;
      } catch {
        // reported below
      }
      if (status === 200 && accepted === hi - lo + 1) {
        this.figures.maxAckMs = Math.max(this.figures.maxAckMs, Date.now() - ts);
        this.settle(i, { device, lo, hi, status: 'acked' });
      } else {
        this.unexpected(`${device} ${lo}-${hi}: HTTP ${status} ${text.slice(0, 200)}`);
        this.settle(i, { device, lo, hi, status: 'in_doubt' });
      }
    }
  }

  private settle(i: number, e: LedgerEntry): void {
    this.ledger.push(e);
    this.next[i] = e.hi;
    const n = e.hi - e.lo + 1;
    this.figures.sent += n;
    if (e.status === 'acked') this.figures.acked += n;
    else this.figures.inDoubt += n;
  }

  /** The ledger as CSV for DuckDB. */
  csv(): string {
    return `device,lo,hi,status\n${this.ledger.map((e) => `${e.device},${e.lo},${e.hi},${e.status}`).join('\n')}\n`;
  }
}
