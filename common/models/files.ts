/**
 * Model files on disk, as the cloud registry, the collector cache and the agent keep them:
 * `<dir>/<name>/<version>.onnx` and beside it `<version>.json` = `{ entry, signature? }`. The
 * bytes are checked against the entry's sha256 before anything is written, and the JSON is
 * written last, so a version with its JSON present has its whole file: a crash mid-way leaves
 * no half model that looks complete.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { isPlainObject } from '../config.js';
import { writeFileDurably } from '../durable-file.js';
import { EdgetwinError, ErrorCodes } from '../errors.js';
import { checkModelId } from '../wire/model-protocol.js';

/** The fields every hop relies on; the full manifest entry (common/models/manifest.ts) has more. */
export interface ModelEntryLike {
  name: string;
  version: string;
  sha256: string;
  bytes: number;
  [k: string]: unknown;
}

export interface StoredModel {
  entry: ModelEntryLike;
  /** Base64 Ed25519 signature of the entry (common/models/signature.ts), when the registry signs. */
  signature?: string;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function isStoredModel(v: unknown): v is StoredModel {
  if (!isPlainObject(v) || !isPlainObject(v['entry'])) return false;
  const e = v['entry'];
  return (
    typeof e['name'] === 'string' &&
    typeof e['version'] === 'string' &&
    typeof e['sha256'] === 'string' &&
    Number.isSafeInteger(e['bytes']) &&
    (v['signature'] === undefined || typeof v['signature'] === 'string')
  );
}

/** Throws EDGETWIN_ERR_MODEL unless the bytes are the ones the entry describes. */
export function checkModelBytes(entry: Pick<ModelEntryLike, 'version' | 'sha256' | 'bytes'>, bytes: Uint8Array): void {
  const actual = sha256Hex(bytes);
  if (actual !== entry.sha256 || bytes.length !== entry.bytes) {
    throw new EdgetwinError(ErrorCodes.MODEL, `model ${entry.version}: file does not match its manifest sha256`, {
      details: { model: entry.version, expected: entry.sha256, actual, bytes: bytes.length, expectedBytes: entry.bytes },
    });
  }
}

export class ModelFiles {
  constructor(readonly dir: string) {}

  /** Names and versions are checked here, the one place paths are made: `..`, `/` or `.` can never leave the folder. */
  filePath(name: string, version: string): string {
    return join(this.dir, checkModelId(name, 'model name'), `${checkModelId(version, 'model version')}.onnx`);
  }

  private metaPath(name: string, version: string): string {
    return join(this.dir, checkModelId(name, 'model name'), `${checkModelId(version, 'model version')}.json`);
  }

  /** The stored entry, or undefined when this version is not (completely) here. */
  get(name: string, version: string): StoredModel | undefined {
    try {
      const v: unknown = JSON.parse(readFileSync(this.metaPath(name, version), 'utf8'));
      return isStoredModel(v) && v.entry.name === name && v.entry.version === version ? v : undefined;
    } catch {
      return undefined;
    }
  }

  /** Stores a verified model: checks the bytes, writes the file, then the entry. */
  put(stored: StoredModel, bytes: Uint8Array): void {
    const { name, version } = stored.entry;
    checkModelBytes(stored.entry, bytes);
    writeFileDurably(this.filePath(name, version), bytes);
    writeFileDurably(this.metaPath(name, version), JSON.stringify(stored));
  }

  /** Re-reads the file and checks it against its entry (bit rot, a hand-edited cache). */
  verify(name: string, version: string): boolean {
    const s = this.get(name, version);
    if (!s) return false;
    try {
      checkModelBytes(s.entry, readFileSync(this.filePath(name, version)));
      return true;
    } catch {
      return false;
    }
  }

  /** Up to `maxBytes` of the file from `offset`. */
  readChunk(name: string, version: string, offset: number, maxBytes: number): Buffer {
    const fd = openSync(this.filePath(name, version), 'r');
    try {
      const buf = Buffer.allocUnsafe(maxBytes);
      const n = readSync(fd, buf, 0, maxBytes, offset);
      return buf.subarray(0, n);
    } finally {
      closeSync(fd);
    }
  }

  remove(name: string, version: string): void {
    rmSync(this.metaPath(name, version), { force: true });
    rmSync(this.filePath(name, version), { force: true });
  }

  /** Every complete version on disk. */
  list(): StoredModel[] {
    if (!existsSync(this.dir)) return [];
    const out: StoredModel[] = [];
    for (const name of readdirSync(this.dir)) {
      let files: string[];
      try {
        files = readdirSync(join(this.dir, name));
      } catch {
        continue;
      }
      for (const f of files) {
        if (!f.endsWith('.json')) continue;
        const s = this.get(name, f.slice(0, -'.json'.length));
        if (s) out.push(s);
      }
    }
    return out;
  }
}
