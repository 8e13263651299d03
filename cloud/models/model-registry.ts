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
import { checkModelBytes, ModelFiles, type StoredModel } from '../../common/models/files.js';
import { checkModelId } from '../../common/wire/model-protocol.js';
import { loadSigningKey, signEntry } from '../../common/models/signature.js';
import { kindOf, parseModelEntry, type ModelKind } from '../../common/models/manifest.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Store } from '../store/store.js';
import type { Principal } from '../auth/tokens.js';
import type { CloudModelsConfig } from './config.js';

export interface ModelRecord {
  name: string;
  version: string;
  /** `anomaly` or `failure` (the entry's kind): which desired property a promotion sets. */
  kind: ModelKind;
  /** `candidate` until some promotion names it (a trainer's upload with `--register`), then `promoted`. */
  stage: 'candidate' | 'promoted';
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
  kind: string;
  promoted: number | null;
}

const record = (r: Row): ModelRecord => ({
  name: r.name,
  version: r.version,
  kind: r.kind === 'failure' ? 'failure' : 'anomaly',
  stage: Number(r.promoted ?? 0) > 0 ? 'promoted' : 'candidate',
  sha256: r.sha256,
  bytes: r.bytes,
  signed: r.signature !== null,
  uploadedAt: new Date(r.uploaded_at).toISOString(),
  uploadedBy: r.uploaded_by,
});

/** Whether any promotion (active or withdrawn) ever named the version: a candidate is one nobody has promoted yet. */
const PROMOTED = '(SELECT count(*) FROM model_promotions p WHERE p.name = m.name AND p.version = m.version) AS promoted';

export class ModelRegistry {
  readonly files: ModelFiles;
  private readonly signingKey: KeyObject | undefined;

  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
    private readonly cfg: CloudModelsConfig,
    stateDir: string,
  ) {
    this.files = new ModelFiles(cfg.dir || join(stateDir, 'models'));
    this.signingKey = cfg.signingKeyFile ? loadSigningKey(cfg.signingKeyFile, 'models.signingKeyFile') : undefined;
  }

  /** Stores a new version; the same bytes again answer the stored record (`created: false`), other bytes 409. */
  async upload(entryIn: unknown, fileBase64: string, who: Principal): Promise<{ model: ModelRecord; created: boolean }> {
    const entry = parseModelEntry(entryIn, 'entry');
    checkModelId(entry.name, 'entry.name');
    checkModelId(entry.version, 'entry.version');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(fileBase64))
      throw new EdgetwinError(ErrorCodes.BAD_REQUEST, 'file must be the model bytes in base64');
    const bytes = Buffer.from(fileBase64, 'base64');
    if (bytes.length > this.cfg.maxBytes) {
      throw new EdgetwinError(ErrorCodes.PAYLOAD_TOO_LARGE, `model is ${bytes.length} bytes, over models.maxBytes (${this.cfg.maxBytes})`, {
        details: { bytes: bytes.length, maxBytes: this.cfg.maxBytes },
      });
    }
    checkModelBytes(entry, bytes);
    const existing = await this.row(entry.name, entry.version);
    if (existing) {
      if (existing.sha256 === entry.sha256) return { model: record(existing), created: false };
      throw new EdgetwinError(
        ErrorCodes.CONFLICT,
        `model ${entry.name} ${entry.version} exists with other bytes (sha256 ${existing.sha256}); versions are immutable, upload a new version`,
        {
          details: { sha256: existing.sha256 },
        },
      );
    }
    const stored: StoredModel = { entry: { ...entry, file: `${entry.version}.onnx` } };
    if (this.signingKey) stored.signature = signEntry(stored.entry, this.signingKey);
    this.files.put(stored, bytes);
    if (this.cfg.verifyOnUpload) await this.smokeTest(stored);
    const now = Date.now();
    const inserted = await this.store.tx(async (tx) => {
      // Two replicas may take the same upload at once: the first row wins, the other answers it.
      const r = await tx.run(
        'INSERT INTO models (name, version, sha256, bytes, entry, signature, uploaded_at, uploaded_by, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name, version) DO NOTHING',
        [
          entry.name,
          entry.version,
          entry.sha256,
          bytes.length,
          JSON.stringify(stored.entry),
          stored.signature ?? null,
          now,
          who.name,
          kindOf(entry),
        ],
      );
      if (r.changes === 0) return false;
      await this.audit.record(
        tx,
        who,
        'model.upload',
        {},
        {
          name: entry.name,
          version: entry.version,
          kind: kindOf(entry),
          sha256: entry.sha256,
          bytes: bytes.length,
          signed: !!stored.signature,
        },
        now,
      );
      return true;
    });
    const row = (await this.row(entry.name, entry.version))!;
    if (!inserted && row.sha256 !== entry.sha256)
      throw new EdgetwinError(ErrorCodes.CONFLICT, `model ${entry.name} ${entry.version} was just uploaded with other bytes`, {
        details: { sha256: row.sha256 },
      });
    return { model: record(row), created: inserted };
  }

  /** onnxruntime only loads when a model is uploaded: the cloud does not carry it otherwise. */
  private async smokeTest(stored: StoredModel): Promise<void> {
    const { name, version } = stored.entry;
    try {
      const entry = parseModelEntry(stored.entry);
      const path = this.files.filePath(name, version);
      if (entry.kind === 'failure')
        await (await (await import('../../common/models/failure-model.js')).FailureModel.load(entry, path)).close();
      else await (await (await import('../../common/models/onnx-model.js')).OnnxModel.load(entry, path)).close();
    } catch (err) {
      this.files.remove(name, version);
      throw err;
    }
  }

  private row(name: string, version: string): Promise<Row | undefined> {
    return this.store.get<Row>(`SELECT m.*, ${PROMOTED} FROM models m WHERE name = ? AND version = ?`, [name, version]);
  }

  async list(name?: string): Promise<ModelRecord[]> {
    const rows =
      name === undefined
        ? await this.store.all<Row>(`SELECT m.*, ${PROMOTED} FROM models m ORDER BY name, uploaded_at`)
        : await this.store.all<Row>(`SELECT m.*, ${PROMOTED} FROM models m WHERE name = ? ORDER BY uploaded_at`, [name]);
    return rows.map(record);
  }

  /** One version with its entry and signature; 404 when unknown. */
  async get(name: string, version: string): Promise<ModelRecord & StoredModel> {
    const r = await this.row(name, version);
    if (!r) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no model ${name} ${version}`);
    return { ...record(r), entry: JSON.parse(r.entry) as StoredModel['entry'], ...(r.signature ? { signature: r.signature } : {}) };
  }
}
