/**
 * CSV replay: NAB-format files (`timestamp,value`) and multi-column files (`timestamp,a,b,…`),
 * at real time (speed 1), N× faster, or as fast as the agent takes them (speed 0). Rows keep the
 * file's timestamps (`timestamps: original`) or are stamped with the time they are replayed
 * (`now`). A bad row is refused with EDGETWIN_ERR_BAD_READING and its line number, counted and
 * skipped. Progress shows as a bar on a terminal, as log lines otherwise. A replay starts from the
 * top of the file at every agent start.
 */
import { statSync } from 'node:fs';
import { basename } from 'node:path';
import Type, { type Static } from 'typebox';
import { sleep } from '../../common/backoff.js';
import { configDefaults, Section } from '../../common/config.js';
import { csvRows } from '../../common/csv.js';
import { METRIC_PATTERN } from '../../common/wire/record.js';
import type { Source, SourceContext, SourceReading } from '../types.js';
import { ReplayProgress, type ProgressOutput } from './progress.js';
import { runReplay } from './replay-run.js';

const csvColumnSchema = Section({
  column: Type.String({ minLength: 1 }),
  metric: Type.Optional(Type.String({ pattern: METRIC_PATTERN })),
  unit: Type.Optional(Type.String({ maxLength: 32 })),
});
export type CsvColumn = Static<typeof csvColumnSchema>;

export const csvReplayConfigSchema = Section(
  {
    enabled: Type.Boolean({ default: false }),
    /** Required when enabled. */
    file: Type.Optional(Type.String({ minLength: 1 })),
    /** 1: real time; N: N× faster; 0: as fast as the agent takes them. */
    speed: Type.Number({ minimum: 0, default: 1 }),
    timestampColumn: Type.String({ minLength: 1, default: 'timestamp' }),
    /** Which columns become which metrics; default: every other column, named after its header (NAB's `value`: after the file). */
    columns: Type.Optional(Type.Array(csvColumnSchema, { minItems: 1 })),
    /** Unit of columns that `columns` does not give one. */
    unit: Type.String({ maxLength: 32, default: '1' }),
    timestamps: Type.Enum(['original', 'now'], { default: 'original' }),
    loop: Type.Boolean({ default: false }),
    progress: Type.Enum(['auto', 'bar', 'lines', 'off'], { default: 'auto' }),
  },
  { if: { properties: { enabled: { const: true } }, required: ['enabled'] }, then: { required: ['file'] } },
);
export type CsvReplayConfig = Static<typeof csvReplayConfigSchema>;
export const csvReplayDefaults: CsvReplayConfig = configDefaults(csvReplayConfigSchema);

/** CSV parsing (header, rows, timestamps) is common/csv.ts, shared with the CLI's backfill. */
export { parseCsvLine, parseCsvTimestamp as parseTimestamp } from '../../common/csv.js';

const GROUP = 1000;

export class CsvReplaySource implements Source {
  readonly name = 'csv-replay';
  /** Data rows read (good or refused), for progress. */
  rows = 0;

  constructor(
    private readonly cfg: CsvReplayConfig,
    private readonly progressOut?: ProgressOutput,
  ) {}

  start(ctx: SourceContext): void {
    statSync(this.cfg.file!); // a missing file fails the start (and is retried) rather than a silent no-op
    runReplay(ctx, this.cfg.loop, () => this.replayOnce(ctx));
  }

  private async replayOnce(ctx: SourceContext): Promise<void> {
    const file = this.cfg.file!;
    const total = statSync(file).size;
    const progress = new ReplayProgress(`csv-replay ${basename(file)}`, total, this.cfg.progress, ctx.log, this.progressOut);
    let group: SourceReading[] = [];
    let firstTs: number | undefined;
    let wallStart = 0;
    let bytes = 0;
    const speed = this.cfg.speed;
    const emit = async (): Promise<void> => {
      if (group.length > 0) ctx.emit(group);
      group = [];
      await ctx.waitForRoom();
    };
    const rows = csvRows({
      file,
      timestampColumn: this.cfg.timestampColumn,
      columns: this.cfg.columns,
      unit: this.cfg.unit,
      signal: ctx.signal,
    });
    replay: for await (const chunk of rows) {
      for (const row of chunk) {
        bytes = row.bytesRead;
        for (const err of row.refused) ctx.reject(err);
        if (row.tooLong) continue;
        this.rows++;
        progress.update(bytes, this.rows);
        if (!Number.isFinite(row.ts)) continue;
        if (firstTs === undefined) {
          firstTs = row.ts;
          wallStart = Date.now();
        }
        if (speed > 0) {
          const due = wallStart + (row.ts - firstTs) / speed;
          const wait = due - Date.now();
          if (wait > 0) {
            await emit();
            await sleep(wait, ctx.signal);
            if (ctx.signal.aborted) break replay;
          }
        }
        const ts = this.cfg.timestamps === 'original' ? row.ts : Date.now();
        for (const r of row.readings) group.push({ ts, metric: r.metric, value: r.value, unit: r.unit });
        if (group.length >= GROUP) await emit();
      }
    }
    await emit();
    progress.done(bytes, this.rows);
  }

  stop(): void {
    // The replay loop ends at its next line or sleep through ctx.signal.
  }
}
