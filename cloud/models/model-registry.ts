/**
 * The cloud's model registry: ONNX files with their manifest entries, stored durably (the file
 * fsynced and renamed in before its row commits, `synchronous=FULL`), each version immutable and
 * identified by its sha256. An upload is checked against the manifest schema the agent uses, its
 * bytes against the entry's sha256 and, by default, by loading it with onnxruntime — a model that
 * would fail on every device fails here instead. With a signing key, each entry is signed.
 */
import type { KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import { checkModelBytes, ModelFiles, type StoredModel } from '../../common/model-files.js';
import { checkModelId } from '../../common/model-protocol.js';
import { loadSigningKey, signEntry } from '../../common/model-signature.js';
import type { SqliteDb } from '../../common/sqlite.js';
import { parseManifest } from '../../common/model-manifest.js';
import type { AuditLog } from '../audit-log.js';
import type { Principal } from '../auth/tokens.js';
import type { CloudModelsConfig } from './config.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS models (
  name TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL, bytes INTEGER NOT NULL, entry TEXT NOT NULL,
  signature TEXT, uploaded_at INTEGER NOT NULL, uploaded_by TEXT NOT NULL, PRIMARY KEY (name, version)
) WITHOUT ROWID;
`;

export interface ModelRecord {
  name: string;
  version: string;
  sha256: string;
  bytes: number;
  signed: boolean;
  uploadedAt: string;
  uploadedBy: string;
}

interface Row {
  name: string;
  version: string;
  sha256: string;
  bytes: number;
  entry: string;
  signature: string | null;
  uploaded_at: number;
  uploaded_by: string;
}

const record = (r: Row): ModelRecord => ({
  name: r.name,
  version: r.version,
  sha256: r.sha256,
  bytes: r.bytes,
  signed: r.signature !== null,
  uploadedAt: new Date(r.uploaded_at).toISOString(),
  uploadedBy: r.uploaded_by,
});

export class ModelRegistry {
  readonly files: ModelFiles;
  private readonly signingKey: KeyObject | undefined;

  constructor(private readonly db: SqliteDb, private readonly audit: AuditLog, private readonly cfg: CloudModelsConfig, stateDir: string) {
    db.exec(SCHEMA);
    this.files = new ModelFiles(cfg.dir || join(stateDir, 'models'));
    this.signingKey = cfg.signingKeyFile ? loadSigningKey(cfg.signingKeyFile, 'models.signingKeyFile') : undefined;
  }

  /** Stores a new version; the same bytes again answer the stored record (`created: false`), other bytes 409. */
  async upload(entryIn: unknown, fileBase64: string, who: Principal): Promise<{ model: ModelRecord; created: boolean }> {
    const entry = parseManifest({ models: [entryIn] }, 'entry').models[0]!;
    checkModelId(entry.name, 'entry.name');
    checkModelId(entry.version, 'entry.version');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(fileBase64)) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, 'file must be the model bytes in base64');
    const bytes = Buffer.from(fileBase64, 'base64');
    if (bytes.length > this.cfg.maxBytes) {
      throw new EdgetwinError(ErrorCodes.PAYLOAD_TOO_LARGE, `model is ${bytes.length} bytes, over models.maxBytes (${this.cfg.maxBytes})`, { details: { bytes: bytes.length, maxBytes: this.cfg.maxBytes } });
    }
    checkModelBytes(entry, bytes);
    const existing = this.row(entry.name, entry.version);
    if (existing) {
      if (existing.sha256 === entry.sha256) return { model: record(existing), created: false };
      throw new EdgetwinError(ErrorCodes.CONFLICT, `model ${entry.name} ${entry.version} exists with other bytes (sha256 ${existing.sha256}); versions are immutable, upload a new version`, {
        details: { sha256: existing.sha256 },
      });
    }
    const stored: StoredModel = { entry: { ...entry, file: `${entry.version}.onnx` } };
    if (this.signingKey) stored.signature = signEntry(stored.entry, this.signingKey);
    this.files.put(stored, bytes);
    if (this.cfg.verifyOnUpload) await this.smokeTest(stored);
    const now = Date.now();
    this.db.transaction(() => {
      this.db
        .prepare('INSERT INTO models (name, version, sha256, bytes, entry, signature, uploaded_at, uploaded_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
        .run(entry.name, entry.version, entry.sha256, bytes.length, JSON.stringify(stored.entry), stored.signature ?? null, now, who.name);
      this.audit.record(who, 'model.upload', {}, { name: entry.name, version: entry.version, sha256: entry.sha256, bytes: bytes.length, signed: !!stored.signature }, now);
    })();
    return { model: record(this.row(entry.name, entry.version)!), created: true };
  }

  /** onnxruntime only loads when a model is uploaded: the cloud does not carry it otherwise. */
  private async smokeTest(stored: StoredModel): Promise<void> {
    const { name, version } = stored.entry;
    const { OnnxModel } = await import('../../common/onnx-model.js');
    try {
      const entry = parseManifest({ models: [stored.entry] }).models[0]!;
      await (await OnnxModel.load(entry, this.files.filePath(name, version))).close();
    } catch (err) {
      this.files.remove(name, version);
      throw err;
    }
  }

  private row(name: string, version: string): Row | undefined {
    return this.db.prepare<[string, string], Row>('SELECT * FROM models WHERE name = ? AND version = ?').get(name, version);
  }

  list(name?: string): ModelRecord[] {
    const rows = name === undefined
      ? this.db.prepare<[], Row>('SELECT * FROM models ORDER BY name, uploaded_at').all()
      : this.db.prepare<[string], Row>('SELECT * FROM models WHERE name = ? ORDER BY uploaded_at').all(name);
    return rows.map(record);
  }

  /** One version with its entry and signature; 404 when unknown. */
  get(name: string, version: string): ModelRecord & StoredModel {
    const r = this.row(name, version);
    if (!r) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no model ${name} ${version}`);
    return { ...record(r), entry: JSON.parse(r.entry) as StoredModel['entry'], ...(r.signature ? { signature: r.signature } : {}) };
  }
}
