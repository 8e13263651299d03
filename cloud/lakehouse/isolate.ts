/**
 * When a staged batch fails in the lakehouse writer on its own, this finds what in it DuckDB or
 * Parquet cannot take, so that those rows — and only those — go to quarantine (reason `lake`) and
 * everything else is written. Ingest refuses unstorable values (common/wire/storable.ts); this is
 * the net under it, for whatever that check does not know yet: no batch can wedge the writer for
 * every site, across restarts.
 *
 * It works by probes: the writer writes a candidate (a set of messages, then single readings) to a
 * scratch folder exactly as a flush would, and the candidate is cut in halves while it fails. A
 * probe of a known-good batch runs first: when that fails too, the fault is not in the data (a full
 * disk, a broken folder) and nothing is quarantined.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { isPlainObject } from '../../common/config.js';
import { fsyncPath } from '../../common/durable-file.js';
import { ErrorCodes, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { counter, type Registry } from '../../common/metrics.js';
import { looseRow, type QuarantineRow } from '../ingest/quality.js';
import type { Tx } from '../store/store.js';
import { countQuarantine } from '../twins/twin-limits.js';
import type { StagedBatch, StagingExtra, StagingStore } from './staging.js';

/** Writes one staged batch to a scratch place; resolves to the error, or undefined when it was written. */
export type Probe = (b: StagedBatch) => Promise<string | undefined>;

/** Errors that say something about the data, not the machine: worth splitting a micro-batch over. */
export function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return false; // ENOSPC, EIO, ENOTDIR …: the file system
  return /^(Invalid Input|Conversion|Out of Range|Invalid|Not implemented|Parser|Binder|Constraint) Error/i.test(errorMessage(err));
}

/** What an operator may see of a writer error without authentication: its class, never the data it quotes. */
export function publicError(err: string | null): string | null {
  if (err === null) return null;
  const cls = /^([A-Za-z ]{1,40} Error)/.exec(err)?.[1] ?? /\b(E[A-Z]{2,12})\b/.exec(err)?.[1];
  return cls ? `${cls} (details in the cloud log, code EDGETWIN_ERR_LAKEHOUSE)` : 'see the cloud log (code EDGETWIN_ERR_LAKEHOUSE)';
}

const DETAIL_MAX = 1000;

/** A tiny batch that any working writer stores: the control probe. */
function controlBatch(b: StagedBatch): StagedBatch {
  const body = Buffer.from(
    JSON.stringify({
      messages: [{ v: 1, device: 'probe', epoch: 0, readings: [{ seq: 0, ts: b.received, metric: 'probe', value: 0, unit: '1' }] }],
    }),
  );
  return { ...b, batchId: 'probe', body, extra: null };
}

interface Msg {
  index: number;
  obj: Record<string, unknown>;
  /** Indexes of the readings still to write (those not dropped already). */
  readings: number[] | undefined;
}

function probeBody(msgs: { obj: Record<string, unknown>; readings: number[] | undefined }[]): Buffer {
  const messages = msgs.map(({ obj, readings }) => {
    if (!readings) return obj;
    const all = obj['readings'] as unknown[];
    return { ...obj, readings: readings.map((j) => all[j]) };
  });
  return Buffer.from(JSON.stringify({ messages }));
}

/**
 * Returns the batch's extra with the unwritable messages and readings dropped and quarantined, or
 * throws when the fault is not in this batch's data (the control probe failed too).
 */
export async function isolate(b: StagedBatch, cause: string, probe: Probe): Promise<{ extra: StagingExtra; quarantined: number }> {
  const control = await probe(controlBatch(b));
  if (control !== undefined) throw new Error(`the writer fails on a known-good batch too, so not on this data: ${control}`);
  const drop = [...(b.extra?.drop ?? [])];
  const quarantine: QuarantineRow[] = [...(b.extra?.quarantine ?? [])];
  const whole = new Set(drop.filter(([, j]) => j < 0).map(([i]) => i));
  const gone = new Set(drop.filter(([, j]) => j >= 0).map(([i, j]) => `${i}/${j}`));
  let env: { messages?: unknown };
  try {
    env = JSON.parse(b.body.toString('utf8')) as { messages?: unknown };
  } catch (err) {
    env = {};
    cause = `${cause}; body is not JSON: ${errorMessage(err)}`;
  }
  const msgs: Msg[] = [];
  const list = Array.isArray(env.messages) ? env.messages : [];
  list.forEach((m, index) => {
    if (whole.has(index)) return;
    const obj: Record<string, unknown> = isPlainObject(m) ? m : { value: m };
    const rs = Array.isArray(obj['readings'])
      ? (obj['readings'] as unknown[]).map((_, j) => j).filter((j) => !gone.has(`${index}/${j}`))
      : undefined;
    msgs.push({ index, obj, readings: rs });
  });
  const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
  const int = (v: unknown): number | null => (Number.isSafeInteger(v) ? (v as number) : null);
  let added = 0;
  const fails = async (set: { obj: Record<string, unknown>; readings: number[] | undefined }[]): Promise<string | undefined> =>
    probe({ ...b, body: probeBody(set), extra: null });

  // Halves a failing set of messages until single messages fail; those are cut down to readings.
  const search = async (set: Msg[], err: string): Promise<void> => {
    if (set.length === 1) return searchReadings(set[0]!, err);
    const half = Math.ceil(set.length / 2);
    for (const part of [set.slice(0, half), set.slice(half)]) {
      const e = await fails(part);
      if (e !== undefined) await search(part, e);
    }
  };
  const searchReadings = async (m: Msg, err: string): Promise<void> => {
    const device = str(m.obj['device']);
    const epoch = int(m.obj['epoch']);
    const detail = (e: string): string => `the lakehouse writer could not store this: ${e}`.slice(0, DETAIL_MAX);
    const rs = m.readings;
    if (rs === undefined || rs.length === 0) {
      drop.push([m.index, -1]);
      quarantine.push(looseRow(device, epoch, m.obj, 'lake', detail(err)));
      added++;
      return;
    }
    const all = m.obj['readings'] as unknown[];
    const bad: { j: number; err: string }[] = [];
    const cut = async (js: number[], e: string): Promise<void> => {
      if (js.length === 1) return void bad.push({ j: js[0]!, err: e });
      const half = Math.ceil(js.length / 2);
      for (const part of [js.slice(0, half), js.slice(half)]) {
        const pe = await fails([{ obj: m.obj, readings: part }]);
        if (pe !== undefined) await cut(part, pe);
      }
    };
    await cut(rs, err);
    // Readings that pass alone but fail together: the message goes whole.
    const targets = bad.length > 0 ? bad : rs.map((j) => ({ j, err }));
    for (const { j, err: e } of targets) {
      drop.push([m.index, j]);
      quarantine.push(looseRow(device, epoch, all[j], 'lake', detail(e)));
      added++;
    }
  };

  if (msgs.length > 0) {
    const first = await fails(msgs);
    if (first !== undefined) await search(msgs, first);
  }
  if (added === 0) {
    // Every message passes alone: what fails is the envelope (or the batch together). Keep it out of silver whole.
    for (const m of msgs) drop.push([m.index, -1]);
    quarantine.push(looseRow(null, null, { batchId: b.batchId, messages: msgs.length }, 'lake', `batch: ${cause}`.slice(0, DETAIL_MAX)));
    added++;
  }
  return { extra: { drop, quarantine }, quarantined: added };
}

/** What the writer quarantined shows on the twins of the site that owns the devices, like ingest's quarantine. */
async function countOnTwins(tx: Tx, site: string, rows: readonly QuarantineRow[]): Promise<void> {
  for (const c of await countQuarantine(tx, site, rows, Date.now()))
    tx.emit({ type: 'twin', site, device: c.device, data: { quarantined: c.added, reason: c.reason } });
}

/** The writer's side of isolation: runs it, records the outcome in staging, and sets aside what still fails. */
export class Isolator {
  /** Batches already isolated once: failing alone again, their body is set aside. */
  private readonly isolated = new Set<number>();
  quarantined = 0;
  private readonly mQuarantined;

  constructor(
    private readonly root: string,
    private readonly staging: StagingStore,
    private readonly log: Logger,
    registry: Registry,
    private readonly probe: Probe,
  ) {
    this.mQuarantined = counter(
      registry,
      'edgetwin_cloud_lake_quarantined_rows_total',
      'Readings or messages the lakehouse writer could not store, sent to quarantine (reason lake)',
    );
  }

  written(batches: readonly StagedBatch[]): void {
    for (const b of batches) this.isolated.delete(b.id);
  }

  private count(n: number): void {
    this.quarantined += n;
    this.mQuarantined.inc(n);
  }

  /** One staged batch fails alone: quarantine what in it cannot be stored, keep the rest; true to retry at once. */
  async handle(b: StagedBatch, cause: string): Promise<boolean> {
    if (this.isolated.has(b.id)) return this.setAside(b, cause);
    try {
      const { extra, quarantined } = await isolate(b, cause, this.probe);
      const before = b.extra?.quarantine.length ?? 0;
      await this.staging.update(b.id, extra, undefined, (tx) => countOnTwins(tx, b.site, extra.quarantine.slice(before)));
      this.isolated.add(b.id);
      this.count(quarantined);
      this.log.error(
        { code: ErrorCodes.LAKEHOUSE, stagingId: b.id, batchId: b.batchId, site: b.site, quarantined, err: cause },
        'lakehouse could not store some rows of a batch: they are in quarantine (reason lake), the rest is written',
      );
      return true;
    } catch (err) {
      this.log.error({ code: ErrorCodes.LAKEHOUSE, stagingId: b.id, err }, 'could not isolate the failing batch; retrying');
      return false;
    }
  }

  /**
   * Last resort, for a batch that still fails after isolation (its raw body itself, which bronze
   * keeps, cannot be stored) or whose stored body no longer inflates (storage damage): the body is
   * kept byte for byte under `_quarantine/` in the lakehouse, and the batch is written with a body
   * of only its storable messages.
   */
  async setAside(b: StagedBatch, cause: string): Promise<boolean> {
    const dir = join(this.root, '_quarantine');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `staging-${b.id}.body`);
    writeFileSync(file, b.body, { mode: 0o600 });
    fsyncPath(file);
    fsyncPath(dir);
    const drop = [...(b.extra?.drop ?? [])];
    let messages: unknown[] = [];
    try {
      const env = JSON.parse(b.body.toString('utf8')) as { messages?: unknown };
      if (Array.isArray(env.messages)) messages = env.messages;
    } catch {
      // not JSON: nothing to drop message by message
    }
    messages.forEach((_, i) => drop.push([i, -1]));
    const where = relative(this.root, file);
    const row = looseRow(
      null,
      null,
      { batchId: b.batchId, file: where },
      'lake',
      `batch body kept as ${where}: ${cause}`.slice(0, DETAIL_MAX),
    );
    await this.staging.update(b.id, { drop, quarantine: [...(b.extra?.quarantine ?? []), row] }, Buffer.from('{"messages":[]}'));
    // (The row names no device: a batch's whole body has no one twin to count it on.)
    this.isolated.delete(b.id);
    this.count(1);
    this.log.error({ code: ErrorCodes.LAKEHOUSE, stagingId: b.id, file }, 'staged batch body set aside: the lakehouse cannot store it');
    return true;
  }
}
