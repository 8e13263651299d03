/**
 * Progress of long work (CSV replay, compaction, backup, NAB evaluation): a bar redrawn in place
 * when the output is a terminal, plain lines every 10 % otherwise (journald, files and pipes must
 * not fill with carriage returns). Lines go to the logger when there is one, else to the output.
 */
import type { Logger } from './log.js';

export type ProgressMode = 'auto' | 'bar' | 'lines' | 'off';

export interface ProgressOutput {
  isTTY?: boolean;
  columns?: number;
  write(s: string): unknown;
}

export interface ProgressOptions {
  mode?: ProgressMode;
  /** Plain lines go here as `info` records instead of to `out` (daemons log, CLIs print). */
  log?: Logger | undefined;
  out?: ProgressOutput;
}

/** `auto` unless EDGETWIN_PROGRESS names another mode (tests and scripts pin it). */
export function progressModeFromEnv(env: NodeJS.ProcessEnv = process.env): ProgressMode {
  const m = env['EDGETWIN_PROGRESS'];
  return m === 'bar' || m === 'lines' || m === 'off' ? m : 'auto';
}

export class Progress {
  private lastDraw = 0;
  private lastStep = -1;
  private readonly mode: 'bar' | 'lines' | 'off';
  private readonly out: ProgressOutput;
  private readonly log: Logger | undefined;

  constructor(
    private readonly label: string,
    private total: number,
    opts: ProgressOptions = {},
  ) {
    this.out = opts.out ?? process.stderr;
    this.log = opts.log;
    const mode = opts.mode ?? 'auto';
    this.mode = mode === 'auto' ? (this.out.isTTY ? 'bar' : 'lines') : mode;
  }

  /** `done` out of the total (a new total may come with it: work discovered as it goes); `detail` follows the percentage. */
  update(done: number, detail = '', force = false, total = this.total): void {
    this.total = total;
    if (this.mode === 'off') return;
    const fraction = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const pct = Math.floor(fraction * 100);
    const tail = detail ? ` ${detail}` : '';
    if (this.mode === 'lines') {
      const step = Math.floor(pct / 10);
      if (step === this.lastStep && !force) return;
      this.lastStep = step;
      const line = `${this.label}: ${pct}%${detail ? ` (${detail})` : ''}`;
      if (this.log) this.log.info({ percent: pct, done, total: this.total }, line);
      else this.out.write(`${line}\n`);
      return;
    }
    const now = Date.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const width = Math.max(10, Math.min(40, (this.out.columns ?? 80) - this.label.length - 30));
    const filled = Math.round(fraction * width);
    this.out.write(`\r${this.label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(pct).padStart(3)}%${tail}`);
  }

  /** Draws the final state once (a 100 % line is not repeated) and ends the bar's line. */
  done(done = this.total, detail = ''): void {
    if (this.mode === 'lines' && this.lastStep === 10) return;
    this.update(done, detail, true);
    if (this.mode === 'bar') this.out.write('\n');
  }
}
