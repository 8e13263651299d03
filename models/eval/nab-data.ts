/**
 * Reading and writing NAB's on-disk layout: `<data>/<category>/<file>.csv` with `timestamp,value`,
 * windows as `{"<category>/<file>.csv": [["start", "end"], ...]}`, profiles as in NAB's
 * config/profiles.json, and result files `<detector>/<category>/<detector>_<file>.csv`.
 */
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import type { CostProfile } from './nab-score.js';

export interface NabSeries {
  /** `<category>/<file>.csv`, the key NAB's windows use. */
  key: string;
  category: string;
  file: string;
  /** Timestamp text as in the CSV, written back unchanged in result files. */
  stamps: string[];
  /** Milliseconds since the epoch, timestamps read as UTC (NAB's have no zone). */
  times: Float64Array;
  values: Float64Array;
}

export type NabWindows = Record<string, Array<[string, string]>>;

const STAMP = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?Z?$/;

/** Parses NAB's `2014-07-01 00:00:00[.ffffff]` (no zone: read as UTC) to epoch milliseconds. */
export function parseNabTime(text: string): number {
  const m = STAMP.exec(text.trim());
  if (!m) return NaN;
  const ms = m[7] ? Math.floor(Number(`0.${m[7]}`) * 1000) : 0;
  return Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, m[6] ? +m[6] : 0, ms);
}

export function parseNabCsv(text: string, key: string): Omit<NabSeries, 'key' | 'category' | 'file'> {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  const header = lines
    .shift()
    ?.split(',')
    .map((h) => h.trim());
  const ti = header?.indexOf('timestamp') ?? -1;
  const vi = header?.indexOf('value') ?? -1;
  if (ti < 0 || vi < 0) throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, `${key}: header must name timestamp and value`);
  const stamps: string[] = [];
  const times = new Float64Array(lines.length);
  const values = new Float64Array(lines.length);
  lines.forEach((line, i) => {
    const cells = line.split(',');
    const t = parseNabTime(cells[ti] ?? '');
    const v = Number(cells[vi]);
    if (!Number.isFinite(t) || !Number.isFinite(v)) {
      throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, `${key}: bad row ${i + 2}: ${line}`, { details: { row: i + 2 } });
    }
    stamps.push(cells[ti]!.trim());
    times[i] = t;
    values[i] = v;
  });
  return { stamps, times, values };
}

/** Every `<category>/<file>.csv` under `dir`, sorted by key so runs are reproducible. */
export function listNabFiles(dir: string): string[] {
  let categories: string[];
  try {
    categories = readdirSync(dir).filter((c) => statSync(join(dir, c)).isDirectory());
  } catch (cause) {
    throw new EdgetwinError(ErrorCodes.USAGE, `cannot read NAB data folder ${dir}`, { cause });
  }
  const keys: string[] = [];
  for (const c of categories) {
    for (const f of readdirSync(join(dir, c))) if (f.endsWith('.csv')) keys.push(`${c}/${f}`);
  }
  return keys.sort();
}

export function readNabSeries(dir: string, key: string): NabSeries {
  const parsed = parseNabCsv(readFileSync(join(dir, key), 'utf8'), key);
  return { key, category: dirname(key), file: basename(key), ...parsed };
}

function readJson(file: string, what: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new EdgetwinError(ErrorCodes.USAGE, `cannot read ${what} ${file}`, { cause });
  }
}

export function readNabWindows(file: string): NabWindows {
  return readJson(file, 'windows file') as NabWindows;
}

/** Converts a file's windows to epoch-millisecond pairs. */
export function windowTimes(windows: Array<[string, string]>): Array<[number, number]> {
  return windows.map(([s, e]) => [parseNabTime(s), parseNabTime(e)]);
}

export function readNabProfiles(file: string): Record<string, CostProfile> {
  const raw = readJson(file, 'profiles file') as Record<string, { CostMatrix: CostProfile }>;
  const out: Record<string, CostProfile> = {};
  for (const [name, p] of Object.entries(raw)) {
    const { tpWeight, fnWeight, fpWeight } = p.CostMatrix;
    out[name] = { tpWeight, fnWeight, fpWeight };
  }
  return out;
}

/** Writes `<out>/<detector>/<category>/<detector>_<file>.csv` with NAB's result columns. */
export function writeNabResult(out: string, detector: string, series: NabSeries, scores: ArrayLike<number>): string {
  const path = join(out, detector, series.category, `${detector}_${series.file}`);
  mkdirSync(dirname(path), { recursive: true });
  const rows = ['timestamp,value,anomaly_score'];
  for (let i = 0; i < series.stamps.length; i++) rows.push(`${series.stamps[i]},${series.values[i]},${scores[i]}`);
  writeFileSync(path, rows.join('\n') + '\n');
  return path;
}
