/**
 * C-MAPSS replay: NASA's turbofan files (space-separated: unit, cycle, 3 settings, 21 sensors)
 * replayed as assets, so a fleet of engines runs through the whole chain — failure model on the
 * device, predictions in the twin. Each engine is an asset `<assetPrefix><unit>` and each column a
 * metric `<asset>.<column>` (`engine-3.s2`; `engine-3.cycle` is the engine's age); all readings of one cycle share a timestamp,
 * `start + (cycle − 1) × stepMs`, which is what the failure model's `step: { by: timestamp }` reads
 * as one step. `order: fleet` replays the engines side by side (cycle 1 of every engine, then
 * cycle 2 …), `file` in file order. A bad line is refused with EDGETWIN_ERR_BAD_READING and its
 * line number, counted and skipped.
 */
import { readFileSync, statSync } from 'node:fs';
import Type, { type Static } from 'typebox';
import { sleep } from '../../common/backoff.js';
import { configDefaults, Section } from '../../common/config.js';
import { EdgetwinError, ErrorCodes, errorMessage } from '../../common/errors.js';
import { CMAPSS_FEATURES, CMAPSS_UNITS, cmapssValue, parseCmapssLine, type CmapssRow } from '../../common/models/cmapss.js';
import type { Source, SourceContext, SourceReading } from '../types.js';
import { runReplay } from './replay-run.js';

export const cmapssReplayConfigSchema = Section(
  {
    enabled: Type.Boolean({ default: false }),
    /** Required when enabled: a C-MAPSS file (train_FD00x.txt or test_FD00x.txt format). */
    file: Type.Optional(Type.String({ minLength: 1 })),
    /** Asset ids are this prefix and the engine's unit number. */
    assetPrefix: Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_.:-]{0,100}$', default: 'engine-' }),
    /** Columns sent (cycle: the engine's age, setting1-3, s1-s21); default all 25. */
    columns: Type.Optional(Type.Array(Type.Enum([...CMAPSS_FEATURES]), { minItems: 1, uniqueItems: true })),
    order: Type.Enum(['fleet', 'file'], { default: 'fleet' }),
    /** Time between two cycles in the readings' timestamps. */
    stepMs: Type.Integer({ minimum: 1, default: 60_000 }),
    /** Timestamp of cycle 1 (ms since the Unix epoch); default: when the replay starts. */
    startAt: Type.Optional(Type.Integer({ minimum: 0 })),
    /** Cycles per second (fleet: rounds of every engine's next cycle); 0: as fast as the agent takes them. */
    speed: Type.Number({ minimum: 0, default: 0 }),
    loop: Type.Boolean({ default: false }),
    /** Larger files are refused (the fleet order reads the whole file). */
    maxFileBytes: Type.Integer({ minimum: 1, default: 64 * 1024 * 1024 }),
  },
  { if: { properties: { enabled: { const: true } }, required: ['enabled'] }, then: { required: ['file'] } },
);
export type CmapssReplayConfig = Static<typeof cmapssReplayConfigSchema>;
export const cmapssReplayDefaults: CmapssReplayConfig = configDefaults(cmapssReplayConfigSchema);

/** Readings handed over at once, at most (then the source waits for room). */
const GROUP = 2000;

export class CmapssReplaySource implements Source {
  readonly name = 'cmapss-replay';
  /** Cycles replayed (all engines). */
  cycles = 0;

  constructor(private readonly cfg: CmapssReplayConfig) {}

  start(ctx: SourceContext): void {
    const size = statSync(this.cfg.file!).size; // a missing file fails the start (and is retried)
    if (size > this.cfg.maxFileBytes)
      throw new EdgetwinError(ErrorCodes.SOURCE, `${this.cfg.file}: ${size} bytes, over sources.cmapssReplay.maxFileBytes`);
    runReplay(ctx, this.cfg.loop, () => this.replayOnce(ctx));
  }

  stop(): void {
    // The replay loop ends at its next cycle or sleep through ctx.signal.
  }

  /** Rows per engine, in file order; bad lines refused one by one. */
  private load(ctx: SourceContext): CmapssRow[][] {
    const file = this.cfg.file!;
    const units = new Map<number, CmapssRow[]>();
    const lines = readFileSync(file, 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      try {
        const row = parseCmapssLine(lines[i]!);
        if (!row) continue;
        const rows = units.get(row.unit) ?? [];
        const last = rows[rows.length - 1];
        if (last && row.cycle <= last.cycle) throw new Error(`unit ${row.unit} cycle ${row.cycle} does not follow cycle ${last.cycle}`);
        rows.push(row);
        units.set(row.unit, rows);
      } catch (err) {
        ctx.reject(new EdgetwinError(ErrorCodes.BAD_READING, `${file} line ${i + 1}: ${errorMessage(err)}`, { details: { line: i + 1 } }));
      }
    }
    return [...units.values()];
  }

  private async replayOnce(ctx: SourceContext): Promise<void> {
    const engines = this.load(ctx);
    const start = this.cfg.startAt ?? Date.now();
    const columns = (this.cfg.columns ?? CMAPSS_FEATURES).map((c) => ({
      name: c,
      index: CMAPSS_FEATURES.indexOf(c),
      unit: CMAPSS_UNITS[c] ?? '1',
    }));
    // The rounds of the replay: one cycle of every running engine (fleet), or one row (file).
    const rounds: CmapssRow[][] =
      this.cfg.order === 'file'
        ? engines.flat().map((r) => [r])
        : Array.from({ length: Math.max(0, ...engines.map((e) => e.length)) }, (_, c) =>
            engines.flatMap((e) => (c < e.length ? [e[c]!] : [])),
          );
    const wallStart = Date.now();
    let group: SourceReading[] = [];
    for (let k = 0; k < rounds.length && !ctx.signal.aborted; k++) {
      if (this.cfg.speed > 0) {
        const wait = wallStart + (k * 1000) / this.cfg.speed - Date.now();
        if (wait > 0) {
          if (group.length > 0) ctx.emit(group);
          group = [];
          await sleep(wait, ctx.signal);
          if (ctx.signal.aborted) return;
        }
      }
      for (const row of rounds[k]!) {
        const asset = `${this.cfg.assetPrefix}${row.unit}`;
        const ts = start + (row.cycle - 1) * this.cfg.stepMs;
        for (const c of columns) group.push({ ts, metric: `${asset}.${c.name}`, value: cmapssValue(row, c.index), unit: c.unit });
        this.cycles++;
      }
      if (group.length >= GROUP) {
        ctx.emit(group);
        group = [];
        await ctx.waitForRoom();
      }
    }
    if (group.length > 0) ctx.emit(group);
  }
}
