/**
 * CSV replay: NAB-format files (`timestamp,value`) and multi-column files (`timestamp,a,b,…`),
 * at real time (speed 1), N× faster, or as fast as the agent takes them (speed 0). Rows keep the
 * file's timestamps (`timestamps: original`) or are stamped with the time they are replayed
 * (`now`). A bad row is refused with EDGETWIN_ERR_BAD_READING and its line number, counted and
 * skipped. Progress shows as a bar on a terminal, as log lines otherwise. A replay starts from the
 * top of the file at every agent start.
 */
import { createReadStream, statSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { sleep } from '../../common/backoff.js';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import { METRIC_PATTERN } from '../../common/record.js';
import type { Source, SourceContext, SourceReading } from '../types.js';
import { readLines } from './lines.js';
import { ReplayProgress, type ProgressMode, type ProgressOutput } from './progress.js';

export interface CsvColumn {
  column: string;
  metric?: string;
  unit?: string;
}

export interface CsvReplayConfig {
  enabled: boolean;
  /** Required when enabled. */
  file?: string;
  /** 1: real time; N: N× faster; 0: as fast as the agent takes them. */
  speed: number;
  timestampColumn: string;
  /** Which columns become which metrics; default: every other column, named after its header (NAB's `value`: after the file). */
  columns?: CsvColumn[];
  /** Unit of columns that `columns` does not give one. */
  unit: string;
  timestamps: 'original' | 'now';
  loop: boolean;
  progress: ProgressMode;
}

export const csvReplayDefaults: CsvReplayConfig = {
  enabled: false,
  speed: 1,
  timestampColumn: 'timestamp',
  unit: '1',
  timestamps: 'original',
  loop: false,
  progress: 'auto',
};

export const csvReplayConfigSchema = {
  type: 'object',
  additionalProperties: false,
  if: { properties: { enabled: { const: true } }, required: ['enabled'] },
  then: { required: ['file'] },
  properties: {
    enabled: { type: 'boolean' },
    file: { type: 'string', minLength: 1 },
    speed: { type: 'number', minimum: 0 },
    timestampColumn: { type: 'string', minLength: 1 },
    columns: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['column'],
        properties: {
          column: { type: 'string', minLength: 1 },
          metric: { type: 'string', pattern: METRIC_PATTERN },
          unit: { type: 'string', maxLength: 32 },
        },
      },
    },
    unit: { type: 'string', maxLength: 32 },
    timestamps: { enum: ['original', 'now'] },
    loop: { type: 'boolean' },
    progress: { enum: ['auto', 'bar', 'lines', 'off'] },
  },
} as const;

/** One CSV record; quoted fields may hold commas and doubled quotes. */
export function parseCsvLine(line: string): string[] {
  if (!line.includes('"')) return line.split(',').map((f) => f.trim());
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      out.push(cur.trim());
      cur = '';
    } else cur += c;
  }
  out.push(cur.trim());
  return out;
}

/** NAB's `2014-02-14 14:27:00` (UTC), ISO 8601, or epoch seconds / milliseconds. */
export function parseTimestamp(s: string): number {
  if (/^\d+(\.\d+)?$/.test(s)) {
    const n = Number(s);
    return Math.round(n < 1e11 ? n * 1000 : n);
  }
  const iso = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(s) ? `${s.replace(' ', 'T')}Z` : s;
  return Date.parse(iso);
}

interface Mapping {
  index: number;
  metric: string;
  unit: string;
}

const GROUP = 1000;

export class CsvReplaySource implements Source {
  readonly name = 'csv-replay';
  /** Data rows read (good or refused), for progress. */
  rows = 0;

  constructor(private readonly cfg: CsvReplayConfig, private readonly progressOut?: ProgressOutput) {}

  private mappings(header: string[]): Mapping[] {
    const file = this.cfg.file!;
    const tsCol = this.cfg.timestampColumn;
    if (!header.includes(tsCol)) throw new EdgetwinError(ErrorCodes.SOURCE, `${file}: no "${tsCol}" column in the header (${header.join(',')})`);
    const nab = header.length === 2 && header[1] === 'value';
    const fileMetric = basename(file, extname(file)).replace(/[^A-Za-z0-9_.:-]/g, '_').replace(/^([^A-Za-z_])/, '_$1');
    const wanted: CsvColumn[] = this.cfg.columns ?? header.filter((h) => h !== tsCol).map((column) => ({ column }));
    return wanted.map((c) => {
      const index = header.indexOf(c.column);
      if (index < 0) throw new EdgetwinError(ErrorCodes.SOURCE, `${file}: no column "${c.column}" (header: ${header.join(',')})`);
      const metric = c.metric ?? (nab && c.column === 'value' ? fileMetric : c.column);
      if (!new RegExp(METRIC_PATTERN).test(metric)) throw new EdgetwinError(ErrorCodes.SOURCE, `${file}: column "${c.column}" is not a valid metric name; map it in sources.csvReplay.columns`);
      return { index, metric, unit: c.unit ?? this.cfg.unit };
    });
  }

  start(ctx: SourceContext): void {
    statSync(this.cfg.file!); // a missing file fails the start (and is retried) rather than a silent no-op
    void this.run(ctx).then(
      () => {
        if (!ctx.signal.aborted) ctx.finished();
      },
      (err) => ctx.fail(err),
    );
  }

  private async run(ctx: SourceContext): Promise<void> {
    do {
      await this.replayOnce(ctx);
    } while (this.cfg.loop && !ctx.signal.aborted);
  }

  private async replayOnce(ctx: SourceContext): Promise<void> {
    const file = this.cfg.file!;
    const total = statSync(file).size;
    const progress = new ReplayProgress(`csv-replay ${basename(file)}`, total, this.cfg.progress, ctx.log, this.progressOut);
    let map: Mapping[] | undefined;
    let tsIndex = 0;
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
    rows: for await (const chunk of readLines(createReadStream(file), 1 << 20, ctx.signal)) {
      for (const line of chunk) {
        bytes = line.bytesRead;
        if ('tooLong' in line) {
          ctx.reject(new EdgetwinError(ErrorCodes.BAD_READING, `${file} line ${line.n}: too long`, { details: { line: line.n } }));
          continue;
        }
        if (line.text.trim() === '') continue;
        const fields = parseCsvLine(line.text);
        if (!map) {
          map = this.mappings(fields);
          tsIndex = fields.indexOf(this.cfg.timestampColumn);
          continue;
        }
        this.rows++;
        progress.update(bytes, this.rows);
        const fileTs = parseTimestamp(fields[tsIndex] ?? '');
        if (!Number.isFinite(fileTs)) {
          ctx.reject(new EdgetwinError(ErrorCodes.BAD_READING, `${file} line ${line.n}: bad timestamp "${fields[tsIndex] ?? ''}"`, { details: { line: line.n } }));
          continue;
        }
        if (firstTs === undefined) {
          firstTs = fileTs;
          wallStart = Date.now();
        }
        if (speed > 0) {
          const due = wallStart + (fileTs - firstTs) / speed;
          const wait = due - Date.now();
          if (wait > 0) {
            await emit();
            await sleep(wait, ctx.signal);
            if (ctx.signal.aborted) break rows;
          }
        }
        const ts = this.cfg.timestamps === 'original' ? fileTs : Date.now();
        for (const m of map) {
          const raw = fields[m.index];
          const value = raw === undefined || raw === '' ? NaN : Number(raw);
          if (!Number.isFinite(value)) {
            ctx.reject(new EdgetwinError(ErrorCodes.BAD_READING, `${file} line ${line.n}: column ${m.metric} is not a number: "${raw ?? ''}"`, { details: { line: line.n } }));
            continue;
          }
          group.push({ ts, metric: m.metric, value, unit: m.unit });
        }
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
