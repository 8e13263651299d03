/**
 * Model rollout on the wire, shared by the agent (which asks), the collector (which answers from
 * its cache) and the cloud (which sets desired `model`): MQTT topics for fetching a model over the
 * device's own authenticated connection, and the shape of the desired `model` value. See
 * docs/wire-contract.md, "Model rollout".
 */
import { Ajv } from 'ajv';
import { EdgetwinError, ErrorCodes } from '../errors.js';
import type { ModelKind } from '../models/manifest.js';

/** Model names and versions travel in topics and URL paths and name folders and files: no '/', '+', '#', spaces, `.` or `..`. */
export const MODEL_ID_PATTERN = '^(?!\\.{1,2}$)[A-Za-z0-9._-]{1,64}$';
const modelIdRe = new RegExp(MODEL_ID_PATTERN);

export const modelTopics = {
  prefix: '$edgetwin/models/',
  /** What a device subscribes to for the replies (the broker allows exactly this filter). */
  responses: '$edgetwin/models/res/#',
  /** The manifest entry (and signature) of one version: JSON `{ entry, signature? }`. */
  getEntry: (rid: string, name: string, version: string): string => `$edgetwin/models/GET/${name}/${version}/entry/?$rid=${rid}`,
  /** Bytes of the model file from `offset`; the reply carries at most the collector's chunk size. */
  getChunk: (rid: string, name: string, version: string, offset: number): string =>
    `$edgetwin/models/GET/${name}/${version}/file/?$rid=${rid}&offset=${offset}`,
  response: (status: number, rid: string, extra: Record<string, number> = {}): string =>
    `$edgetwin/models/res/${status}/?$rid=${rid}${Object.entries(extra)
      .map(([k, v]) => `&${k}=${v}`)
      .join('')}`,
} as const;

export type ModelTopic =
  | { kind: 'entry'; rid: string | undefined; name: string; version: string }
  | { kind: 'chunk'; rid: string | undefined; name: string; version: string; offset: number }
  | { kind: 'response'; rid: string | undefined; status: number; offset: number | undefined; total: number | undefined }
  | { kind: 'unknown'; rid: string | undefined };

function int(s: string | null | undefined): number | undefined {
  return s !== null && s !== undefined && /^\d{1,15}$/.test(s) ? Number(s) : undefined;
}

export function parseModelTopic(topic: string): ModelTopic {
  const q = topic.indexOf('?');
  const parts = (q < 0 ? topic : topic.slice(0, q)).split('/').filter((p) => p.length > 0);
  const query = new URLSearchParams(q < 0 ? '' : topic.slice(q + 1));
  const rid = query.get('$rid') || undefined;
  if (parts[0] !== '$edgetwin' || parts[1] !== 'models') return { kind: 'unknown', rid };
  if (parts[2] === 'res' && parts.length === 4) {
    return { kind: 'response', rid, status: int(parts[3]) ?? 0, offset: int(query.get('offset')), total: int(query.get('total')) };
  }
  const [, , method, name, version, what] = parts;
  if (method !== 'GET' || parts.length !== 6 || !modelIdRe.test(name!) || !modelIdRe.test(version!)) return { kind: 'unknown', rid };
  if (what === 'entry') return { kind: 'entry', rid, name: name!, version: version! };
  const offset = int(query.get('offset') ?? '0');
  if (what === 'file' && offset !== undefined) return { kind: 'chunk', rid, name: name!, version: version!, offset };
  return { kind: 'unknown', rid };
}

/**
 * The desired property naming the version of each model kind a device runs: the anomaly model on
 * `model` (as before kinds existed), the failure model on `failureModel`. The cloud's promotions set
 * it, the agent's rollout of that kind follows it.
 */
export const DESIRED_MODEL_KEY: Readonly<Record<ModelKind, string>> = { anomaly: 'model', failure: 'failureModel' };

/** The desired `model` value: which version to run, and its digest (the cloud sets it on promotion). */
export interface DesiredModel {
  name: string;
  version: string;
  sha256: string;
}

const validateDesired = new Ajv({ strict: false }).compile<DesiredModel>({
  type: 'object',
  required: ['name', 'version', 'sha256'],
  properties: {
    name: { type: 'string', pattern: MODEL_ID_PATTERN },
    version: { type: 'string', pattern: MODEL_ID_PATTERN },
    sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
  },
});

/** Checks a desired `model` (or `failureModel`, named by `key`) value; throws EDGETWIN_ERR_CONFIG naming what is wrong. */
export function parseDesiredModel(v: unknown, key = 'model'): DesiredModel {
  if (!validateDesired(v)) {
    const e = validateDesired.errors?.[0];
    throw new EdgetwinError(
      ErrorCodes.CONFIG,
      `desired "${key}" must be { "name", "version", "sha256" }: ${e?.instancePath || '/'} ${e?.message ?? 'is invalid'}`,
      { details: { key } },
    );
  }
  return { name: v.name, version: v.version, sha256: v.sha256 };
}

export function checkModelId(v: string, what: string): string {
  if (!modelIdRe.test(v)) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, `${what} must match ${MODEL_ID_PATTERN}, got "${v}"`);
  return v;
}
