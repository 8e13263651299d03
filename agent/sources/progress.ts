/** Progress of a CSV replay by bytes read, with the row count: the shared common/progress.ts bar or lines. */
import type { Logger } from '../../common/log.js';
import { Progress, type ProgressMode, type ProgressOutput } from '../../common/progress.js';

export type { ProgressMode, ProgressOutput };

export class ReplayProgress {
  private readonly progress: Progress;

  constructor(label: string, totalBytes: number, mode: ProgressMode, log: Logger, out: ProgressOutput = process.stderr) {
    this.progress = new Progress(label, totalBytes, { mode, log, out });
  }

  update(bytesRead: number, rows: number, force = false): void {
    this.progress.update(bytesRead, `${rows} rows`, force);
  }

  done(bytesRead: number, rows: number): void {
    this.progress.done(bytesRead, `${rows} rows`);
  }
}
