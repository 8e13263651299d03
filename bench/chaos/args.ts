/** Command-line options both chaos runs (`npm run chaos`, `npm run chaos:cloud`) take, and their number check. */
export const CHAOS_OPTIONS = {
  quick: { type: 'boolean', default: false },
  agents: { type: 'string' },
  collectors: { type: 'string' },
  readings: { type: 'string' },
  'duration-s': { type: 'string' },
  'drain-timeout-s': { type: 'string' },
  dir: { type: 'string' },
  keep: { type: 'boolean', default: false },
  json: { type: 'boolean', default: false },
} as const;

/** `--name N` as a whole number >= 0, or `dflt` when it is not given. */
export function wholeNumberOption(values: Record<string, unknown>, name: string, dflt: number): number {
  const v = values[name];
  if (v === undefined) return dflt;
  const x = Number(v);
  if (!Number.isInteger(x) || x < 0) throw new Error(`--${name} must be a whole number, got "${String(v)}"`);
  return x;
}
