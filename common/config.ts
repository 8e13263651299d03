/**
 * Config loading shared by every daemon: file (JSON or YAML) → deep-merged over defaults →
 * environment overrides (secrets never need to be in files) → one JSON Schema check that names
 * the offending key. Fails fast at start-up, before anything listens or opens a database.
 *
 * Each component declares its config once, as a TypeBox schema beside its code: the schema holds
 * the limits and the defaults (`default:`), the TS type is `Static<typeof schema>`, and the
 * defaults object is derived from the schema (`configDefaults`). Nothing is written twice.
 */
import { readFileSync, statSync } from 'node:fs';
import { extname } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import Type, { type Static, type TObject, type TProperties, type TSchema } from 'typebox';
import { parse as parseYaml } from 'yaml';
import { EdgetwinError, ErrorCodes } from './errors.js';
import { hasCredential } from './redact.js';

export type JsonObject = Record<string, unknown>;

/** Maps environment variable names to dotted config keys, e.g. EDGETWIN_INGEST_TOKEN → ingest.token. */
export type EnvMap = Record<string, string>;

export interface LoadConfigOptions<S extends TSchema> {
  /** Component name, used in messages ("collector config: …"). */
  component: string;
  /** The component's TypeBox schema: types, limits and defaults in one place. */
  schema: S;
  file?: string | undefined;
  /** Already-parsed overrides applied after the file (used by tests and the demo). */
  overrides?: unknown;
  env?: NodeJS.ProcessEnv;
  envMap?: EnvMap;
}

/**
 * A config section (TypeBox object) whose unknown keys are refused: a misspelt key must fail at
 * start-up, not be ignored.
 */
export function Section<P extends TProperties>(properties: P, opts: Record<string, unknown> = {}): TObject<P> {
  return Type.Object(properties, { additionalProperties: false, ...opts });
}

/**
 * The defaults a schema declares, as a value (what an empty config file means). A fresh copy on
 * every call, so callers may change it.
 */
export function configDefaults<S extends TSchema>(schema: S): Static<S> {
  return withDefaults(schema, {}) as Static<S>;
}

/**
 * `value` with the schema's defaults filled in where a key is missing: each property's `default`;
 * a missing required section becomes an object of its own defaults; sections and array items that
 * are present get theirs too (an optional section only when it is given). Run after the file,
 * overrides and environment are merged, before the schema check. Changes and returns `value`.
 */
export function withDefaults(schema: unknown, value: unknown): unknown {
  if (!isPlainObject(schema)) return value;
  if (Array.isArray(value)) {
    if (isPlainObject(schema['items'])) value.forEach((v, i) => (value[i] = withDefaults(schema['items'], v)));
    return value;
  }
  if (!isPlainObject(value)) return value;
  const props = isPlainObject(schema['properties']) ? schema['properties'] : {};
  const required = new Set(Array.isArray(schema['required']) ? (schema['required'] as string[]) : []);
  for (const [k, p] of Object.entries(props)) {
    if (!isPlainObject(p)) continue;
    if (value[k] === undefined) {
      if (p['default'] !== undefined) value[k] = structuredClone(p['default']);
      else if (required.has(k) && isPlainObject(p['properties'])) value[k] = {};
      else continue;
    }
    value[k] = withDefaults(p, value[k]);
  }
  // Records (TypeBox's patternProperties): each entry gets the defaults of its value schema.
  const patterns = isPlainObject(schema['patternProperties']) ? Object.entries(schema['patternProperties']) : [];
  for (const k of Object.keys(value)) {
    if (k in props) continue;
    const match = patterns.find(([re]) => new RegExp(re, 'u').test(k));
    if (match) value[k] = withDefaults(match[1], value[k]);
  }
  return value;
}

/** The one shape of a config error found after the schema check (rules that span keys): names the key. */
export function configKeyError(component: string, key: string, msg: string, cause?: unknown): EdgetwinError {
  return new EdgetwinError(ErrorCodes.CONFIG, `${component} config: key "${key}" ${msg}`, { details: { key }, cause });
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
    throw new EdgetwinError(ErrorCodes.CONFIG, `${component} config: ${file} is not valid JSON/YAML: ${(cause as Error).message}`, {
      cause,
    });
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

export function validateConfig<S extends TSchema>(component: string, schema: S, value: unknown): Static<S> {
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
  return value as Static<S>;
}

/** Config keys whose values are credentials; values with credentials inside (URL userinfo, `sig=`) count too. */
const SECRET_KEYS = new Set([
  'password',
  'sasKey',
  'token',
  'tokens',
  'cloudToken',
  'connectionString',
  'blobConnectionString',
  'secret',
  // Slack, Teams and plain webhooks carry their secret in the URL path, which no pattern can spot.
  'webhookUrl',
]);

/** The dotted key of the first plaintext credential in a parsed config file, if any. */
export function findPlaintextSecret(v: unknown, path = ''): string | undefined {
  if (typeof v === 'string') return hasCredential(v) ? path : undefined;
  if (Array.isArray(v)) return v.map((x, i) => findPlaintextSecret(x, `${path}[${i}]`)).find((k) => k !== undefined);
  if (!isPlainObject(v)) return undefined;
  for (const [k, x] of Object.entries(v)) {
    const key = path ? `${path}.${k}` : k;
    const filled = typeof x === 'string' ? x.length > 0 : Array.isArray(x) && x.length > 0;
    if (SECRET_KEYS.has(k) && filled) return key;
    const inner = findPlaintextSecret(x, key);
    if (inner !== undefined) return inner;
  }
  return undefined;
}

/**
 * A config file that holds a credential must be as private as a secret file: refused when group or
 * others may read it, like `passwordFile` (readSecretFile). Put secrets in the environment or a
 * mode-600 `*File`, or chmod 600 the config.
 */
export function refuseReadableSecrets(file: string, parsed: unknown, component: string): void {
  const key = findPlaintextSecret(parsed);
  if (key === undefined || (statSync(file).mode & 0o077) === 0) return;
  throw new EdgetwinError(
    ErrorCodes.CONFIG,
    `${component} config: key "${key}" holds a credential, but ${file} is readable by group or others: ` +
      'chmod 600 the file, or move the secret to the environment or a mode-600 *File key',
    { details: { key } },
  );
}

export function loadConfig<S extends TSchema>(opts: LoadConfigOptions<S>): Static<S> {
  let merged: unknown = {};
  if (opts.file) {
    const fromFile = readConfigFile(opts.file, opts.component);
    refuseReadableSecrets(opts.file, fromFile, opts.component);
    merged = deepMerge(merged, fromFile);
  }
  if (opts.overrides !== undefined) merged = deepMerge(merged, opts.overrides);
  if (opts.envMap) merged = deepMerge(merged, envOverrides(opts.env ?? process.env, opts.envMap));
  // A copy: the defaults are filled in place, and the caller's overrides must stay as they were.
  return validateConfig(opts.component, opts.schema, withDefaults(opts.schema, structuredClone(merged)));
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
    throw new EdgetwinError(
      ErrorCodes.CONFIG,
      `config key "${key}": secret file ${file} must not be readable by group or others (chmod 600)`,
    );
  }
  return readFileSync(file, 'utf8').trim();
}
