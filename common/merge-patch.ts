/**
 * JSON Merge Patch (RFC 7386), the semantics of IoT Hub twin patches: objects merge key by key,
 * `null` removes a key, anything else (arrays included) replaces. Shared by the collector's twin
 * store, the agent's twin client and the cloud, so every hop merges the same way.
 */
import { isPlainObject, type JsonObject } from './config.js';

export type { JsonObject };

/** Returns `target` with `patch` merged in; `target` is not modified. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return structuredClone(patch);
  const out: JsonObject = isPlainObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** The smallest merge patch that turns `from` into `to` (both objects); `{}` when they are equal. */
export function diffPatch(from: JsonObject, to: JsonObject): JsonObject {
  const patch: JsonObject = {};
  for (const k of Object.keys(from)) if (!(k in to)) patch[k] = null;
  for (const [k, v] of Object.entries(to)) {
    const old = from[k];
    if (isPlainObject(old) && isPlainObject(v)) {
      const sub = diffPatch(old, v);
      if (Object.keys(sub).length > 0) patch[k] = sub;
    } else if (!jsonEqual(old, v)) {
      // A null inside `to` cannot be expressed by a merge patch: merge patches drop nulls.
      patch[k] = v === null ? null : structuredClone(v);
    }
  }
  return patch;
}

/** Structural equality of JSON values (key order does not matter). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => jsonEqual(x, b[i]));
  if (isPlainObject(a) && isPlainObject(b)) {
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    return ka.every((k) => k in b && jsonEqual(a[k], b[k]));
  }
  return false;
}

/** Nesting depth of a JSON value: a scalar is 0, `{}` and `{"a":1}` are 1. */
export function jsonDepth(v: unknown): number {
  if (Array.isArray(v)) return 1 + Math.max(0, ...v.map(jsonDepth));
  if (isPlainObject(v)) return 1 + Math.max(0, ...Object.values(v).map(jsonDepth));
  return 0;
}
