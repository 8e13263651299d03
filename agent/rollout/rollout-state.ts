/**
 * What a rollout decided, kept in `<dir>/rollout.json` (one file per model kind): the desired model,
 * why it is not running (not retried while desired stays the same) and which models passed their
 * trial — so a restart neither retries a rolled-back model nor re-runs a trial.
 */
import { readFileSync } from 'node:fs';
import { ErrorCodes, errorMessage, isEdgetwinError, storeErrorCode, type ErrorCode } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { writeFileDurably } from '../../common/durable-file.js';
import type { DesiredModel } from '../../common/wire/model-protocol.js';

/** Why a desired model is not running (reported as `modelRollout.reason`). */
export interface Refusal {
  version: string;
  sha256: string;
  code: ErrorCode;
  message: string;
  at: string;
  details?: Record<string, unknown>;
}

/** rollout.json */
export interface Kept {
  desired: DesiredModel | null;
  /** Why the desired model is not running; not retried while desired stays the same. */
  refused: Refusal | null;
  /** `version@sha256` of models that passed their trial. */
  accepted: string[];
}

export const sameModel = (a: DesiredModel | null, b: { version: string; sha256: string } | null): boolean =>
  a === b || (a !== null && b !== null && a.version === b.version && a.sha256 === b.sha256);
export const keyOf = (m: { version: string; sha256: string }): string => `${m.version}@${m.sha256}`;

/** Why `want` is not running, from the error that stopped it. */
export function refusalOf(want: DesiredModel, err: unknown): Refusal {
  const e = isEdgetwinError(err) ? err : undefined;
  return {
    version: want.version,
    sha256: want.sha256,
    code: e?.code ?? ErrorCodes.MODEL,
    message: errorMessage(err),
    at: new Date().toISOString(),
    ...(e?.details ? { details: e.details } : {}),
  };
}

export function loadKept(path: string): Kept {
  try {
    const k = JSON.parse(readFileSync(path, 'utf8')) as Partial<Kept>;
    return { desired: k.desired ?? null, refused: k.refused ?? null, accepted: Array.isArray(k.accepted) ? k.accepted : [] };
  } catch {
    return { desired: null, refused: null, accepted: [] };
  }
}

export function keepState(path: string, kept: Kept, log: Logger): void {
  try {
    writeFileDurably(path, JSON.stringify(kept));
  } catch (err) {
    log.warn({ code: storeErrorCode(err), path, err }, 'could not keep the rollout state');
  }
}
