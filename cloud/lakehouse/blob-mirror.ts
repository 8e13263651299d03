/**
 * BlobMirror: keeps an Azure Blob container (or ADLS Gen2 filesystem) a copy of the local
 * lakehouse. The local directory stays the working copy DuckDB writes and reads; the container
 * holds every committed Parquet file under the same relative path (`<prefix>/silver/readings/
 * site=…/date=…/part-….parquet`).
 *
 * Consistency comes from the file names, not a manifest: committed files are immutable (a name is
 * never rewritten with other content once the lake cursor covers it), only files at or below the
 * cursor are uploaded, and a compaction's merged file is uploaded before its inputs are deleted, so
 * at every instant the container's listing is a set of files the layout rules (layout.ts) read
 * correctly — superseded leftovers are skipped the same way as on local disk.
 *
 * Each sync diffs the local files against the last known remote listing: uploads what is missing,
 * then deletes remote data files that are gone locally (compaction inputs, retention). Blobs that do
 * not look like lakehouse data files are never touched. Syncs run after each committed flush and
 * each maintenance run (coalesced), and on a timer, which also picks up compaction done by the CLI;
 * a failed sync is retried with backoff. Ingest is not held up: the 2xx answers once the batch is
 * in SQLite staging, long before its Parquet reaches the container.
 *
 * A cloud whose local lakehouse holds no data files restores it from the container at start.
 */
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import type { TokenCredential } from '@azure/identity';
import type { ContainerClient, StoragePipelineOptions } from '@azure/storage-blob';
import { fsyncPath } from '../../common/durable-file.js';
import { EdgetwinError, ErrorCodes, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { counter, gauge, type Registry } from '../../common/metrics.js';
import { redactUrl } from '../../common/redact.js';
import type { LakehouseConfig } from '../config.js';
import { ensureContainer, openContainer, parseBlobUrl } from './blob-client.js';
import { listFiles, parseFileName, TABLE_NAMES, TABLES } from './layout.js';
import type { StagingStore } from './staging.js';

const DATA_PATH = new RegExp(`^(?:${Object.values(TABLES).join('|')})/site=[^/]+/date=\\d{4}-\\d{2}-\\d{2}/part-[^/]+\\.parquet$`);
const PARALLEL = 4;
const STOP_SYNC_MS = 15_000;

export interface BlobMirrorOptions {
  /** Full sync (which also picks up the CLI's compaction and retention) this often; 0 = only on demand. */
  syncIntervalMs: number;
  /** First retry delay after a failed sync (doubles up to 60 s). */
  retryMs: number;
  /** Safe-to-log description of the container (no SAS). */
  describe: string;
}

export interface BlobMirrorStatus {
  target: string;
  remoteFiles: number;
  pendingUploads: number;
  pendingDeletes: number;
  lastSyncAt: string | null;
  lastError: string | null;
  failingSinceMs: number;
}

export class BlobMirror {
  /** Relative path → bytes of the data files known to be in the container. */
  private readonly remote = new Map<string, number>();
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay: number;
  private pendingUploads = 0;
  private pendingDeletes = 0;
  private lastSyncAt: number | null = null;
  private lastError: string | null = null;
  private failingSince = 0;
  private readonly mOps;
  private readonly mBytes;
  private readonly mPending;

  constructor(
    private readonly root: string,
    private readonly container: ContainerClient,
    private readonly prefix: string,
    /** Committed lake cursor: files beyond it belong to a flush in progress. */
    private readonly cursor: () => number,
    private readonly log: Logger,
    registry: Registry,
    private readonly opts: BlobMirrorOptions,
  ) {
    this.retryDelay = opts.retryMs;
    this.mOps = counter(registry, 'edgetwin_cloud_lake_blob_ops_total', 'Lakehouse files mirrored to Azure Blob, by operation and result', [
      'op',
      'result',
    ]);
    this.mBytes = counter(registry, 'edgetwin_cloud_lake_blob_uploaded_bytes_total', 'Bytes of lakehouse files uploaded to Azure Blob');
    this.mPending = gauge(registry, 'edgetwin_cloud_lake_blob_pending_files', 'Lakehouse files not yet mirrored (uploads + deletes)');
  }

  private blobName(rel: string): string {
    return this.prefix ? `${this.prefix}/${rel}` : rel;
  }

  /** Reads the container's listing of lakehouse data files (creating the container if missing). */
  async load(): Promise<void> {
    await ensureContainer(this.container);
    this.remote.clear();
    const strip = this.prefix ? `${this.prefix}/` : '';
    for await (const b of this.container.listBlobsFlat({ prefix: strip })) {
      const rel = b.name.slice(strip.length);
      if (DATA_PATH.test(rel)) this.remote.set(rel, b.properties.contentLength ?? -1);
    }
  }

  get remoteFiles(): ReadonlyMap<string, number> {
    return this.remote;
  }

  /** Local committed data files, relative path → bytes. */
  private localFiles(): Map<string, { path: string; bytes: number }> {
    const cursor = this.cursor();
    const out = new Map<string, { path: string; bytes: number }>();
    for (const t of TABLE_NAMES) {
      for (const f of listFiles(this.root, t)) {
        if (f.hi <= cursor) out.set(relative(this.root, f.path).split(sep).join('/'), { path: f.path, bytes: f.bytes });
      }
    }
    return out;
  }

  /** Committed files only: leftovers of an unfinished flush do not make a lakehouse. */
  private hasLocalData(): boolean {
    const cursor = this.cursor();
    return TABLE_NAMES.some((t) => listFiles(this.root, t).some((f) => f.hi <= cursor));
  }

  /**
   * When the local lakehouse has no data file, downloads every data file of the container into it
   * (each through a temp file, size-checked, fsynced, renamed). Returns the highest staging id the
   * restored files cover (the lake cursor they imply), or undefined when nothing was restored.
   */
  async restoreIfEmpty(): Promise<{ files: number; bytes: number; maxHi: number } | undefined> {
    if (this.remote.size === 0 || this.hasLocalData()) return undefined;
    const tmp = join(this.root, '_tmp', `restore-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    let maxHi = 0;
    let bytes = 0;
    const entries = [...this.remote];
    try {
      await parallel(entries, PARALLEL, async ([rel, size], i) => {
        const part = join(tmp, String(i));
        await this.container.getBlobClient(this.blobName(rel)).downloadToFile(part);
        const got = statSync(part).size;
        if (size >= 0 && got !== size) throw new Error(`restore of ${rel}: got ${got} bytes, listing says ${size}`);
        fsyncPath(part);
        const target = join(this.root, ...rel.split('/'));
        mkdirSync(dirname(target), { recursive: true });
        renameSync(part, target);
        maxHi = Math.max(maxHi, parseFileName(rel.slice(rel.lastIndexOf('/') + 1))?.hi ?? 0);
        bytes += got;
      });
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    this.log.info({ target: this.opts.describe, files: entries.length, bytes, maxHi }, 'lakehouse restored from Azure Blob');
    return { files: entries.length, bytes, maxHi };
  }

  start(): void {
    if (this.opts.syncIntervalMs <= 0) return;
    this.timer = setInterval(() => this.requestSync(), this.opts.syncIntervalMs);
    this.timer.unref();
  }

  /** Asks for a sync soon (coalesced with one in progress). */
  requestSync(): void {
    void this.sync().catch(() => undefined);
  }

  /** Resolves after a full sync pass that started after this call (rejects if it failed). */
  sync(): Promise<void> {
    if (this.queued) return this.queued;
    if (!this.running) return this.startPass();
    // One queued pass serves every caller that arrived while the current one ran.
    this.queued = this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        return this.startPass();
      });
    return this.queued;
  }

  private startPass(): Promise<void> {
    const run = this.pass().finally(() => {
      if (this.running === run) this.running = undefined;
    });
    this.running = run;
    return run;
  }

  private async pass(): Promise<void> {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    try {
      const local = this.localFiles();
      const uploads = [...local].filter(([rel, f]) => this.remote.get(rel) !== f.bytes);
      // Deletes only after uploads: the container never lacks a file that covers a deleted one.
      const deletes = () => [...this.remote.keys()].filter((rel) => !local.has(rel));
      this.pendingUploads = uploads.length;
      this.pendingDeletes = deletes().length;
      this.mPending.set(this.pendingUploads + this.pendingDeletes);
      await parallel(uploads, PARALLEL, async ([rel, f]) => {
        try {
          await this.container
            .getBlockBlobClient(this.blobName(rel))
            .uploadFile(f.path, { blobHTTPHeaders: { blobContentType: 'application/vnd.apache.parquet' } });
        } catch (err) {
          // Deleted by a compaction while uploading: the next pass sees the merged file instead.
          if (!existsSync(f.path)) {
            local.delete(rel);
            return;
          }
          this.mOps.inc({ op: 'upload', result: 'error' });
          throw err;
        }
        this.remote.set(rel, f.bytes);
        this.pendingUploads--;
        this.mOps.inc({ op: 'upload', result: 'ok' });
        this.mBytes.inc(f.bytes);
      });
      const gone = deletes();
      this.pendingDeletes = gone.length;
      await parallel(gone, PARALLEL, async (rel) => {
        try {
          await this.container.getBlobClient(this.blobName(rel)).deleteIfExists();
        } catch (err) {
          this.mOps.inc({ op: 'delete', result: 'error' });
          throw err;
        }
        this.remote.delete(rel);
        this.pendingDeletes--;
        this.mOps.inc({ op: 'delete', result: 'ok' });
      });
      this.mPending.set(0);
      this.lastSyncAt = Date.now();
      if (this.failingSince !== 0)
        this.log.info({ target: this.opts.describe, failedMs: Date.now() - this.failingSince }, 'lakehouse mirror to Azure Blob recovered');
      this.failingSince = 0;
      this.lastError = null;
      this.retryDelay = this.opts.retryMs;
    } catch (err) {
      this.mPending.set(this.pendingUploads + this.pendingDeletes);
      this.lastError = errorMessage(err);
      const first = this.failingSince === 0;
      if (first) this.failingSince = Date.now();
      this.log[first ? 'error' : 'debug'](
        { code: ErrorCodes.LAKEHOUSE, target: this.opts.describe, err: this.lastError, retryMs: this.retryDelay },
        'lakehouse mirror to Azure Blob failed; retrying',
      );
      if (!this.stopped) {
        this.retryTimer = setTimeout(() => this.requestSync(), this.retryDelay);
        this.retryTimer.unref();
        this.retryDelay = Math.min(this.retryDelay * 2, 60_000);
      }
      throw err;
    }
  }

  status(): BlobMirrorStatus {
    return {
      target: this.opts.describe,
      remoteFiles: this.remote.size,
      pendingUploads: this.pendingUploads,
      pendingDeletes: this.pendingDeletes,
      lastSyncAt: this.lastSyncAt === null ? null : new Date(this.lastSyncAt).toISOString(),
      lastError: this.lastError,
      failingSinceMs: this.failingSince === 0 ? 0 : Date.now() - this.failingSince,
    };
  }

  /** Stops the timers and makes one last sync attempt (what fails is picked up at the next start). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    // Bounded: an unreachable container must not hold up shutdown (the next start syncs).
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.sync().catch(() => undefined), new Promise((r) => (timer = setTimeout(r, STOP_SYNC_MS)))]);
    clearTimeout(timer);
  }
}

async function parallel<T>(items: readonly T[], n: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async (): Promise<void> => {
    while (next < items.length && failed === undefined) {
      const i = next++;
      try {
        await fn(items[i]!, i);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  if (failed !== undefined) throw failed;
}

export interface OpenBlobMirrorOptions {
  root: string;
  cfg: Pick<LakehouseConfig, 'url' | 'blobConnectionString' | 'blobSyncIntervalMs'>;
  staging: StagingStore;
  log: Logger;
  registry: Registry;
  credential?: TokenCredential | undefined;
  /** Client pipeline options (tests shorten the SDK's retries). */
  pipeline?: StoragePipelineOptions | undefined;
}

/**
 * Connects to the container, reads its listing and, when the local lakehouse is empty, restores
 * it — before the writer starts, which would otherwise take restored files for an unfinished flush.
 * Failing here fails the start: syncing against a listing it could not read would be unsafe.
 */
export async function openBlobMirror(o: OpenBlobMirrorOptions): Promise<BlobMirror> {
  const loc = parseBlobUrl(o.cfg.url!);
  const describe = redactUrl(o.cfg.url!);
  const container = await openContainer(loc, {
    connectionString: o.cfg.blobConnectionString,
    credential: o.credential,
    pipeline: o.pipeline,
  });
  const mirror = new BlobMirror(o.root, container, loc.prefix, () => o.staging.cursor(), o.log, o.registry, {
    syncIntervalMs: o.cfg.blobSyncIntervalMs,
    retryMs: 1000,
    describe,
  });
  try {
    await mirror.load();
    const restored = await mirror.restoreIfEmpty();
    const cursor = o.staging.cursor();
    if (!restored || restored.maxHi <= cursor) {
      // the copy is not ahead of the state: nothing to reconcile
    } else if (cursor === 0 && o.staging.pendingBatches === 0) {
      await o.staging.advanceCursor(restored.maxHi); // a fresh state under an existing lake
    } else {
      // An older database under a newer copy (a point-in-time restore): the database is the truth.
      // Files beyond its cursor hold batches it does not know or still has staged; the writer
      // deletes them (here and, by the next sync, in the container) and writes the staged ones again.
      await o.staging.reserveIdsAbove(restored.maxHi);
      o.log.warn(
        { cursor, copyHi: restored.maxHi, staged: o.staging.pendingBatches },
        'lakehouse: the Blob copy is ahead of the database (restored to an earlier point): files beyond the lake cursor are dropped',
      );
    }
  } catch (err) {
    throw new EdgetwinError(ErrorCodes.LAKEHOUSE, `lakehouse: cannot open the Azure Blob copy at ${describe}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  return mirror;
}
