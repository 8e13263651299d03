/**
 * Config loading shared by every daemon: file (JSON or YAML) → deep-merged over defaults →
 * environment overrides (secrets never need to be in files) → one JSON Schema check that names
 * the offending key. Fails fast at start-up, before anything listens or opens a database.
 */
import { readFileSync, statSync } from 'node:fs';
import { extname } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { EdgetwinError, ErrorCodes } from './errors.js';

export type JsonObject = Record<string, unknown>;

/** Maps environment variable names to dotted config keys, e.g. EDGETWIN_INGEST_TOKEN → ingest.token. */
export type EnvMap = Record<string, string>;

export interface LoadConfigOptions<T> {
  /** Component name, used in messages ("collector config: …"). */
  component: string;
  schema: object;
  defaults: T;
  file?: string | undefined;
  /** Already-parsed overrides applied after the file (used by tests and the demo). */
  overrides?: unknown;
  env?: NodeJS.ProcessEnv;
  envMap?: EnvMap;
}

export function isPlainObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Objects merge key by key; arrays and scalars from `over` replace those in `base`. */
export function deepMerge<T>(base: T, over: unknown): T {
  if (!isPlainObject(base) || !isPlainObject(over)) return (over === undefined ? base : over) as T;
  const out: JsonObject = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    out[k] = isPlainObject(out[k]) && isPlainObject(v) ? deepMerge(out[k], v) : v;
  }
  return out as T;
}

export function readConfigFile(file: string, component: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new EdgetwinError(ErrorCodes.CONFIG, `${component} config: cannot read ${file}`, { cause });
  }
  try {
    const ext = extname(file).toLowerCase();
    return ext === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (cause) {
    throw new EdgetwinError(ErrorCodes.CONFIG, `${component} config: ${file} is not valid JSON/YAML: ${(cause as Error).message}`, { cause });
  }
}

function setPath(obj: JsonObject, dotted: string, value: unknown): void {
  const parts = dotted.split('.');
  let cur = obj;
  for (const p of parts.slice(0, -1)) {
    if (!isPlainObject(cur[p])) cur[p] = {};
    cur = cur[p] as JsonObject;
  }
  cur[parts[parts.length - 1]!] = value;
}

/** Env values are strings; numbers and booleans are coerced by the schema check (coerceTypes). */
export function envOverrides(env: NodeJS.ProcessEnv, envMap: EnvMap): JsonObject {
  const out: JsonObject = {};
  for (const [name, key] of Object.entries(envMap)) {
    const v = env[name];
    if (v !== undefined && v !== '') setPath(out, key, v);
  }
  return out;
}

export function describeConfigError(component: string, e: ErrorObject): string {
  const base = e.instancePath.replace(/^\//, '').replace(/\//g, '.');
  if (e.keyword === 'additionalProperties') {
    const extra = String((e.params as { additionalProperty: string }).additionalProperty);
    return `${component} config: unknown key "${base ? `${base}.` : ''}${extra}"`;
  }
  if (e.keyword === 'required') {
    const missing = String((e.params as { missingProperty: string }).missingProperty);
    return `${component} config: missing required key "${base ? `${base}.` : ''}${missing}"`;
  }
  return `${component} config: key "${base || '(root)'}" ${e.message ?? 'is invalid'}`;
}

const ajv = new Ajv({ allErrors: false, strict: false, coerceTypes: true, useDefaults: false });
const compiled = new WeakMap<object, ReturnType<typeof ajv.compile>>();

export function validateConfig<T>(component: string, schema: object, value: unknown): T {
  let validate = compiled.get(schema);
  if (!validate) {
    validate = ajv.compile(schema);
    compiled.set(schema, validate);
  }
  if (!validate(value)) {
    const e = validate.errors![0]!;
    throw new EdgetwinError(ErrorCodes.CONFIG, describeConfigError(component, e), {
      details: { key: e.instancePath.replace(/^\//, '').replace(/\//g, '.'), keyword: e.keyword },
    });
  }
  return value as T;
}

export function loadConfig<T>(opts: LoadConfigOptions<T>): T {
  let merged: unknown = structuredClone(opts.defaults);
  if (opts.file) merged = deepMerge(merged, readConfigFile(opts.file, opts.component));
  if (opts.overrides !== undefined) merged = deepMerge(merged, opts.overrides);
  if (opts.envMap) merged = deepMerge(merged, envOverrides(opts.env ?? process.env, opts.envMap));
  return validateConfig<T>(opts.component, opts.schema, merged);
}

/**
 * Reads a secret from a file, refusing files that group or others can read: a key that any user
 * on the box can read is not a secret.
 */
export function readSecretFile(file: string, key: string): string {
  let mode: number;
  try {
    mode = statSync(file).mode;
  } catch (cause) {
    throw new EdgetwinError(ErrorCodes.CONFIG, `config key "${key}": cannot read secret file ${file}`, { cause });
  }
  if ((mode & 0o077) !== 0) {
    throw new EdgetwinError(ErrorCodes.CONFIG, `config key "${key}": secret file ${file} must not be readable by group or others (chmod 600)`);
  }
  return readFileSync(file, 'utf8').trim();
}
