/**
 * NASA's C-MAPSS turbofan format (space-separated: unit, cycle, 3 operational settings, 21
 * sensors; rows may end with spaces), read by the agent's replay source and by `npm run eval:rul`.
 * Column names are the ones failure-model manifests use as feature names.
 */
import { readFileSync } from 'node:fs';
import { EdgetwinError, ErrorCodes } from '../errors.js';

/** The 24 value columns after unit and cycle (the cycle itself is the feature `cycle`: the engine's age). */
export const CMAPSS_COLUMNS: readonly string[] = ['setting1', 'setting2', 'setting3', ...Array.from({ length: 21 }, (_, i) => `s${i + 1}`)];

/** Units of the sensors (Saxena et al. 2008, table 2); settings and ratios are dimensionless. */
export const CMAPSS_UNITS: Readonly<Record<string, string>> = {
  cycle: 'cycle',
  s1: 'degR',
  s2: 'degR',
  s3: 'degR',
  s4: 'degR',
  s5: 'psia',
  s6: 'psia',
  s7: 'psia',
  s8: 'rpm',
  s9: 'rpm',
  s11: 'psia',
  s12: 'pps/psi',
  s13: 'rpm',
  s14: 'rpm',
  s18: 'rpm',
  s19: 'rpm',
  s20: 'lbm/s',
  s21: 'lbm/s',
};

/** Feature names a failure model may read from a C-MAPSS row: `cycle` and the 24 value columns. */
export const CMAPSS_FEATURES: readonly string[] = ['cycle', ...CMAPSS_COLUMNS];

/** A row's value of feature `f` (an index into CMAPSS_FEATURES). */
export function cmapssValue(row: CmapssRow, f: number): number {
  return f === 0 ? row.cycle : row.values[f - 1]!;
}

export interface CmapssRow {
  unit: number;
  cycle: number;
  /** One value per CMAPSS_COLUMNS entry. */
  values: number[];
}

/** Parses one line; undefined for a blank line; throws EDGETWIN_ERR_BAD_READING saying what is wrong. */
export function parseCmapssLine(line: string): CmapssRow | undefined {
  const t = line.trim();
  if (t === '') return undefined;
  const f = t.split(/\s+/);
  if (f.length !== 2 + CMAPSS_COLUMNS.length)
    throw new EdgetwinError(ErrorCodes.BAD_READING, `expected ${2 + CMAPSS_COLUMNS.length} columns, found ${f.length}`);
  const unit = Number(f[0]);
  const cycle = Number(f[1]);
  if (!Number.isSafeInteger(unit) || unit < 0 || !Number.isSafeInteger(cycle) || cycle < 1)
    throw new EdgetwinError(ErrorCodes.BAD_READING, `unit and cycle must be whole numbers (cycle from 1), got "${f[0]}" "${f[1]}"`);
  const values = f.slice(2).map(Number);
  const bad = values.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new EdgetwinError(ErrorCodes.BAD_READING, `column ${CMAPSS_COLUMNS[bad]} is not a number: "${f[2 + bad]}"`);
  return { unit, cycle, values };
}

/** A whole file, rows grouped per unit in file order; a bad line throws with its line number. */
export function readCmapss(file: string): Map<number, CmapssRow[]> {
  const units = new Map<number, CmapssRow[]>();
  const lines = readFileSync(file, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    let row: CmapssRow | undefined;
    try {
      row = parseCmapssLine(lines[i]!);
    } catch (err) {
      throw new EdgetwinError(ErrorCodes.BAD_READING, `${file} line ${i + 1}: ${(err as Error).message}`, {
        cause: err,
        details: { line: i + 1 },
      });
    }
    if (!row) continue;
    const rows = units.get(row.unit) ?? [];
    if (rows.length > 0 && row.cycle <= rows[rows.length - 1]!.cycle)
      throw new EdgetwinError(
        ErrorCodes.BAD_READING,
        `${file} line ${i + 1}: unit ${row.unit} cycle ${row.cycle} does not follow ${rows[rows.length - 1]!.cycle}`,
      );
    rows.push(row);
    units.set(row.unit, rows);
  }
  return units;
}

/** A RUL file: one true remaining useful life per unit, in unit order (1, 2, …). */
export function readRulFile(file: string): number[] {
  const out: number[] = [];
  const lines = readFileSync(file, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const t = lines[i]!.trim();
    if (t === '') continue;
    const v = Number(t);
    if (!Number.isFinite(v) || v < 0)
      throw new EdgetwinError(ErrorCodes.BAD_READING, `${file} line ${i + 1}: not a remaining life: "${t}"`);
    out.push(v);
  }
  return out;
}
