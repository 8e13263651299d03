/**
 * Optional signing of model manifest entries (Ed25519). The cloud's registry signs the entry it
 * stores; agents configured with the public key run only entries whose signature verifies. The
 * entry carries the file's sha256, so the signature covers the model bytes too, end to end through
 * any collector.
 */
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isPlainObject, readSecretFile } from '../config.js';
import { EdgetwinError, ErrorCodes } from '../errors.js';

/** JSON with object keys sorted at every level: the bytes that are signed. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (isPlainObject(v)) {
    const keys = Object.keys(v)
      .filter((k) => v[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Parses a PEM key and insists on Ed25519, naming the config key otherwise. */
function ed25519(parse: (pem: string) => KeyObject, pem: string, key: string, file: string): KeyObject {
  try {
    const k = parse(pem);
    if (k.asymmetricKeyType !== 'ed25519') throw new Error(`a ${k.asymmetricKeyType} key`);
    return k;
  } catch (cause) {
    throw new EdgetwinError(ErrorCodes.CONFIG, `config key "${key}": ${file} is not an Ed25519 key in PEM`, { cause, details: { key } });
  }
}

/** The registry's private key (PKCS#8 PEM, mode 600). */
export function loadSigningKey(file: string, key: string): KeyObject {
  return ed25519(createPrivateKey, readSecretFile(file, key), key, file);
}

/** The public key agents verify with (SPKI PEM; not a secret). */
export function loadVerifyKey(file: string, key: string): KeyObject {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new EdgetwinError(ErrorCodes.CONFIG, `config key "${key}": cannot read ${file}`, { cause, details: { key } });
  }
  return ed25519(createPublicKey, pem, key, file);
}

/** Base64 Ed25519 signature of the entry's canonical JSON. */
export function signEntry(entry: unknown, key: KeyObject): string {
  return sign(null, Buffer.from(canonicalJson(entry)), key).toString('base64');
}

/** Throws EDGETWIN_ERR_MODEL unless `signature` is the key's signature of the entry. */
export function verifyEntry(entry: unknown, signature: string | undefined, key: KeyObject, version: string): void {
  if (!signature)
    throw new EdgetwinError(ErrorCodes.MODEL, `model ${version}: not signed, and this agent runs only signed models`, {
      details: { model: version, reason: 'unsigned' },
    });
  let ok = false;
  try {
    ok = verify(null, Buffer.from(canonicalJson(entry)), key, Buffer.from(signature, 'base64'));
  } catch {
    ok = false;
  }
  if (!ok)
    throw new EdgetwinError(ErrorCodes.MODEL, `model ${version}: signature does not verify with the configured public key`, {
      details: { model: version, reason: 'signature' },
    });
}
