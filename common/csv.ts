/**
 * Reading CSV files of readings, shared by the agent's CSV replay (agent/sources/csv-replay.ts)
 * and the CLI's backfill (cli/backfill.ts): NAB's `timestamp,value` files and multi-column files
 * (`timestamp,a,b,…`, one metric per column). The header picks the columns; each data row comes
 * out with its sample time, its readings, and what was refused in it (EDGETWIN_ERR_BAD_READING
 * with the line number) — the caller counts and skips those. Pacing, stamping and delivery are
 * the caller's.
 */
import { createReadStream } from 'node:fs';
import { basename, extname } from 'node:path';
import { EdgetwinError, ErrorCodes } from './errors.js';
import { readLines } from './lines.js';
import { METRIC_PATTERN } from './wire/record.js';
import { parseTimestamp as parseIsoTimestamp } from './wire/storable.js';

/** Which column becomes which metric (unit: the file's default when unset). */
export interface CsvColumn {
  column: string;
  metric?: string | undefined;
  unit?: string | undefined;
}

export interface CsvFileOptions {
  file: string;
  timestampColumn: string;
  /** Default: every other column, named after its header (NAB's `value`: after the file). */
  columns?: CsvColumn[] | undefined;
  /** Unit of columns that `columns` does not give one. */
  unit: string;
  signal?: AbortSignal | undefined;
}

export interface CsvReading {
  metric: string;
  value: number;
  unit: string;
}

/** One data row: its line number, bytes read so far, sample time (NaN: refused whole), readings and refusals. */
export interface CsvRow {
  line: number;
  bytesRead: number;
  ts: number;
  readings: CsvReading[];
  refused: EdgetwinError[];
  /** A line over 1 MiB: refused, and not counted as a data row. */
  tooLong?: true;
}

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

/**
 * NAB's `2014-02-14 14:27:00`, ISO 8601 (without an offset: UTC, as everywhere in edgetwin —
 * common/wire/storable.ts), or epoch seconds / milliseconds.
 */
export function parseCsvTimestamp(s: string): number {
  if (/^\d+(\.\d+)?$/.test(s)) {
    const n = Number(s);
    return Math.round(n < 1e11 ? n * 1000 : n);
  }
  return parseIsoTimestamp(s);
}

interface Mapping {
  index: number;
  metric: string;
  unit: string;
}

function mappings(opts: CsvFileOptions, header: string[]): Mapping[] {
  const { file, timestampColumn: tsCol } = opts;
  if (!header.includes(tsCol))
    throw new EdgetwinError(ErrorCodes.SOURCE, `${file}: no "${tsCol}" column in the header (${header.join(',')})`);
  const nab = header.length === 2 && header[1] === 'value';
  const fileMetric = basename(file, extname(file))
    .replace(/[^A-Za-z0-9_.:-]/g, '_')
    .replace(/^([^A-Za-z_])/, '_$1');
  const wanted: CsvColumn[] = opts.columns ?? header.filter((h) => h !== tsCol).map((column) => ({ column }));
  return wanted.map((c) => {
    const index = header.indexOf(c.column);
    if (index < 0) throw new EdgetwinError(ErrorCodes.SOURCE, `${file}: no column "${c.column}" (header: ${header.join(',')})`);
    const metric = c.metric ?? (nab && c.column === 'value' ? fileMetric : c.column);
    if (!new RegExp(METRIC_PATTERN).test(metric))
      throw new EdgetwinError(
        ErrorCodes.SOURCE,
        `${file}: column "${c.column}" is not a valid metric name; map it in sources.csvReplay.columns`,
      );
    return { index, metric, unit: c.unit ?? opts.unit };
  });
}

const refusal = (file: string, line: number, what: string): EdgetwinError =>
  new EdgetwinError(ErrorCodes.BAD_READING, `${file} line ${line}: ${what}`, { details: { line } });

/**
 * The file's data rows, in groups (one per chunk read). A header that does not fit throws
 * EDGETWIN_ERR_SOURCE; a bad row is returned with `refused` (and `ts` NaN when its time is bad).
 */
export async function* csvRows(opts: CsvFileOptions): AsyncGenerator<CsvRow[]> {
  const { file } = opts;
  let map: Mapping[] | undefined;
  let tsIndex = 0;
  for await (const chunk of readLines(createReadStream(file), 1 << 20, opts.signal)) {
    const out: CsvRow[] = [];
    for (const line of chunk) {
      if ('tooLong' in line) {
        out.push({
          line: line.n,
          bytesRead: line.bytesRead,
          ts: NaN,
          readings: [],
          refused: [refusal(file, line.n, 'too long')],
          tooLong: true,
        });
        continue;
      }
      if (line.text.trim() === '') continue;
      const fields = parseCsvLine(line.text);
      if (!map) {
        map = mappings(opts, fields);
        tsIndex = fields.indexOf(opts.timestampColumn);
        continue;
      }
      const row: CsvRow = {
        line: line.n,
        bytesRead: line.bytesRead,
        ts: parseCsvTimestamp(fields[tsIndex] ?? ''),
        readings: [],
        refused: [],
      };
      out.push(row);
      if (!Number.isFinite(row.ts)) {
        row.refused.push(refusal(file, line.n, `bad timestamp "${fields[tsIndex] ?? ''}"`));
        continue;
      }
      for (const m of map) {
        const raw = fields[m.index];
        const value = raw === undefined || raw === '' ? NaN : Number(raw);
        if (Number.isFinite(value)) row.readings.push({ metric: m.metric, value, unit: m.unit });
        else row.refused.push(refusal(file, line.n, `column ${m.metric} is not a number: "${raw ?? ''}"`));
      }
    }
    if (out.length > 0) yield out;
  }
}
