/**
 * Progress of a replay: a bar redrawn in place when stderr is a terminal, plain log lines every
 * 10 % otherwise (journald, files and pipes must not fill with carriage returns).
 */
import type { Logger } from '../../common/log.js';

export type ProgressMode = 'auto' | 'bar' | 'lines' | 'off';

export interface ProgressOutput {
  isTTY?: boolean;
  columns?: number;
  write(s: string): unknown;
}

export class ReplayProgress {
  private lastDraw = 0;
  private lastStep = -1;
  private readonly mode: 'bar' | 'lines' | 'off';

  constructor(
    private readonly label: string,
    private readonly totalBytes: number,
    mode: ProgressMode,
    private readonly log: Logger,
    private readonly out: ProgressOutput = process.stderr,
  ) {
    this.mode = mode === 'auto' ? (out.isTTY ? 'bar' : 'lines') : mode;
  }

  update(bytesRead: number, rows: number, force = false): void {
    if (this.mode === 'off') return;
    const fraction = this.totalBytes > 0 ? Math.min(1, bytesRead / this.totalBytes) : 1;
    const pct = Math.floor(fraction * 100);
    if (this.mode === 'lines') {
      const step = Math.floor(pct / 10);
      if (step === this.lastStep && !force) return;
      this.lastStep = step;
      this.log.info({ percent: pct, rows }, `${this.label}: ${pct}% (${rows} rows)`);
      return;
    }
    const now = Date.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const width = Math.max(10, Math.min(40, (this.out.columns ?? 80) - this.label.length - 30));
    const filled = Math.round(fraction * width);
    this.out.write(`\r${this.label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(pct).padStart(3)}% ${rows} rows`);
  }

  done(bytesRead: number, rows: number): void {
    if (this.mode === 'lines' && this.lastStep === 10) return;
    this.update(bytesRead, rows, true);
    if (this.mode === 'bar') this.out.write('\n');
  }
}
