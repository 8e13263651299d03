/**
 * AuditExporter: copies every audit entry, in id order, into hash-chained JSON-lines segments
 * (cloud/audit/chain.ts) under `audit.export.dir`, fsyncing each batch; a segment is sealed when it
 * reaches `segmentMaxBytes` or `segmentMaxAgeMs`, and sealed segments are uploaded to
 * `audit.export.blobUrl` — in Azure a container with a time-based immutability policy (7 years,
 * deploy/azure/terraform), written with If-None-Match: * so nothing is ever overwritten.
 *
 * The files are the exporter's state: after a crash it reads the last segment back, drops a torn
 * last line, and goes on from the last exported audit id. With several replicas only the holder
 * of the `audit-export` lease writes. An id gap (a transaction that took an id and had not yet
 * committed, on PostgreSQL) is waited for up to `gapWaitMs`, then treated as a rollback.
 */
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import Type, { type Static } from 'typebox';
import { configDefaults, Section } from '../../common/config.js';
import { fsyncPath } from '../../common/durable-file.js';
import type { Logger } from '../../common/log.js';
import { counter, gauge, type Registry } from '../../common/metrics.js';
import { RerunTimer } from '../../common/rerun-timer.js';
import type { Lease, Store } from '../store/store.js';
import { auditEntryOf, type AuditRow } from './audit-log.js';
import { chainLine, GENESIS, listSegments, sealLine, segmentName, type ChainLine, type SealLine } from './chain.js';

export const auditExportConfigSchema = Section({
  enabled: Type.Boolean({ default: true }),
  /** Where segments are written; empty: `<stateDir>/audit`. */
  dir: Type.String({ default: '' }),
  intervalMs: Type.Integer({ minimum: 100, default: 5000 }),
  segmentMaxBytes: Type.Integer({ minimum: 1024, default: 8 * 1024 * 1024 }),
  segmentMaxAgeMs: Type.Integer({ minimum: 1000, default: 86_400_000 }),
  gapWaitMs: Type.Integer({ minimum: 0, default: 30_000 }),
  /** Container URL for the immutable copy (`https://<acct>.blob.core.windows.net/audit[/prefix]`); empty: local only. */
  blobUrl: Type.String({ default: '' }),
  /** Credential for blobUrl when it has no SAS and managed identity is not used — env EDGETWIN_AUDIT_BLOB_CONNECTION_STRING. */
  blobConnectionString: Type.Optional(Type.String({ minLength: 1 })),
});
export type AuditExportConfig = Static<typeof auditExportConfigSchema>;
export const auditExportDefaults: AuditExportConfig = configDefaults(auditExportConfigSchema);

/** Where sealed segments go (a Blob container in Azure); `put` must refuse to overwrite. */
export interface SegmentUploader {
  put(name: string, bytes: Buffer): Promise<void>;
}

interface Tip {
  segment: number;
  open: boolean;
  lines: number;
  seq: number;
  id: number;
  hash: string;
  bytes: number;
  openedAt: number;
}

/** Reads the chain's tip from the files; cuts a torn last line (a crash mid-write) from the open segment. */
export function readTip(dir: string, now: number): Tip {
  const segs = listSegments(dir);
  const last = segs[segs.length - 1];
  if (!last) return { segment: 1, open: false, lines: 0, seq: 0, id: 0, hash: GENESIS, bytes: 0, openedAt: now };
  const path = join(dir, last.file);
  let text = readFileSync(path, 'utf8');
  if (last.open && text.length > 0 && !text.endsWith('\n')) {
    const cut = text.lastIndexOf('\n') + 1;
    truncateSync(path, Buffer.byteLength(text.slice(0, cut)));
    text = text.slice(0, cut);
  }
  const lines = text.split('\n').filter(Boolean);
  const tail = lines.length ? (JSON.parse(lines[lines.length - 1]!) as ChainLine & Partial<SealLine>) : undefined;
  const entries = lines.filter((l) => !l.startsWith('{"seal"'));
  const lastEntry = entries.length ? (JSON.parse(entries[entries.length - 1]!) as ChainLine) : undefined;
  if (!last.open) {
    // Sealed: the next entry opens the following segment, chained to the seal.
    return {
      segment: last.n + 1,
      open: false,
      lines: 0,
      seq: tail?.lastSeq ?? 0,
      id: lastEntry?.id ?? 0,
      hash: tail?.hash ?? GENESIS,
      bytes: 0,
      openedAt: now,
    };
  }
  if (!tail || !lastEntry) {
    // An open segment that holds nothing (a crash right after creating it): as if it never was.
    unlinkSync(path);
    return readTip(dir, now);
  }
  const first = JSON.parse(entries[0]!) as ChainLine;
  return {
    segment: last.n,
    open: true,
    lines: entries.length,
    seq: tail.seq,
    id: Number(tail.id),
    hash: tail.hash,
    bytes: Buffer.byteLength(text),
    openedAt: Date.parse(first.at) || now,
  };
}

export class AuditExporter {
  /** Exports every intervalMs while the `audit-export` lease is held. */
  private readonly timer = new RerunTimer({
    run: () => this.exportOnce(),
    next: () => (this.lease?.held ? this.o.cfg.intervalMs : undefined),
    onError: (err) => this.o.log.warn({ err }, 'audit export failed; retrying'),
  });
  private lease: Lease | undefined;
  private stopped = false;
  private gapSince: number | undefined;
  private readonly now: () => number;
  private readonly mLines;
  private readonly mLag;

  constructor(
    private readonly o: {
      store: Store;
      cfg: AuditExportConfig;
      dir: string;
      log: Logger;
      registry: Registry;
      uploader?: SegmentUploader | undefined;
      now?: () => number;
    },
  ) {
    this.now = o.now ?? Date.now;
    mkdirSync(o.dir, { recursive: true, mode: 0o700 });
    this.mLines = counter(o.registry, 'edgetwin_cloud_audit_exported_total', 'Audit entries written to the hash-chained export');
    this.mLag = gauge(o.registry, 'edgetwin_cloud_audit_export_lag_entries', 'Audit entries not yet exported (last check)');
  }

  start(): void {
    this.lease = this.o.store.lease('audit-export', 5000);
    this.lease.onChange((held) => {
      if (held && !this.stopped) this.timer.schedule(0);
      else this.timer.cancel();
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.timer.stop();
    await this.lease?.release();
  }

  /** Appends every new audit entry, seals a full or old segment, uploads sealed ones; answers entries written. */
  async exportOnce(): Promise<number> {
    const now = this.now();
    const tip = readTip(this.o.dir, now);
    let written = 0;
    for (;;) {
      const rows = await this.o.store.all<AuditRow>('SELECT * FROM audit WHERE id > ? ORDER BY id LIMIT 1000', [tip.id]);
      const take: AuditRow[] = [];
      for (const r of rows) {
        const expected = (take.length ? take[take.length - 1]!.id : tip.id) + 1;
        if (Number(r.id) !== expected && !this.gapExpired(now)) break;
        take.push(r);
      }
      if (take.length === 0) break;
      this.gapSince = undefined;
      let chunk = '';
      // Written in pieces that end at segment boundaries: a segment is sealed as soon as it is full.
      const flush = (): void => {
        if (!chunk) return;
        const bytes = append(join(this.o.dir, segmentName(tip.segment, true)), chunk);
        chunk = '';
        if (!tip.open) {
          tip.open = true;
          tip.openedAt = now;
          tip.bytes = 0;
          fsyncPath(this.o.dir);
        }
        tip.bytes += bytes;
        if (tip.bytes >= this.o.cfg.segmentMaxBytes) this.seal(tip);
      };
      for (const r of take) {
        const line = chainLine({ seq: tip.seq + 1, ...auditEntryOf(r) }, tip.hash);
        chunk += `${JSON.stringify(line)}\n`;
        tip.seq = line.seq;
        tip.id = line.id;
        tip.hash = line.hash;
        tip.lines++;
        if (tip.bytes + Buffer.byteLength(chunk) >= this.o.cfg.segmentMaxBytes) flush();
      }
      flush();
      written += take.length;
      this.mLines.inc(take.length);
      if (rows.length < 1000 || take.length < rows.length) break;
    }
    if (tip.open && tip.lines > 0 && now - tip.openedAt >= this.o.cfg.segmentMaxAgeMs) this.seal(tip);
    const behind = await this.o.store.get<{ n: number }>('SELECT count(*) AS n FROM audit WHERE id > ?', [tip.id]);
    this.mLag.set(Number(behind?.n ?? 0));
    await this.upload();
    return written;
  }

  private gapExpired(now: number): boolean {
    this.gapSince ??= now;
    return now - this.gapSince >= this.o.cfg.gapWaitMs;
  }

  private seal(tip: Tip): void {
    const open = join(this.o.dir, segmentName(tip.segment, true));
    const seal = sealLine(tip.segment, tip.lines, tip.seq, tip.hash);
    append(open, `${JSON.stringify(seal)}\n`);
    renameSync(open, join(this.o.dir, segmentName(tip.segment, false)));
    fsyncPath(this.o.dir);
    this.o.log.info({ segment: tip.segment, lines: tip.lines, lastSeq: tip.seq }, 'audit segment sealed');
    Object.assign(tip, { segment: tip.segment + 1, open: false, lines: 0, bytes: 0, hash: seal.hash });
  }

  /** Sealed segments not yet copied go up (marker file `<segment>.uploaded` once done). */
  private async upload(): Promise<void> {
    if (!this.o.uploader) return;
    for (const s of listSegments(this.o.dir)) {
      if (s.open || existsSync(join(this.o.dir, `${s.file}.uploaded`))) continue;
      try {
        await this.o.uploader.put(s.file, readFileSync(join(this.o.dir, s.file)));
      } catch (err) {
        this.o.log.warn({ segment: s.file, err }, 'audit segment upload failed; retrying');
        return;
      }
      writeFileSync(join(this.o.dir, `${s.file}.uploaded`), '');
    }
  }
}

function append(path: string, text: string): number {
  const fd = openSync(path, 'a', 0o600);
  try {
    const buf = Buffer.from(text);
    writeSync(fd, buf);
    fsyncSync(fd);
    return buf.length;
  } finally {
    closeSync(fd);
  }
}

/** Uploads to a Blob container, never overwriting (If-None-Match: *; 409 = already there, which is fine). */
export async function blobUploader(url: string, connectionString: string | undefined): Promise<SegmentUploader> {
  const { ensureContainer, openContainer, parseBlobUrl } = await import('../lakehouse/blob-client.js');
  const loc = parseBlobUrl(url);
  const container = await openContainer(loc, { connectionString });
  let ensured = false;
  return {
    async put(name, bytes) {
      if (!ensured) {
        // In Azure the Terraform creates it, with the immutability policy; elsewhere (tests, Azurite) make it.
        await ensureContainer(container);
        ensured = true;
      }
      const blob = container.getBlockBlobClient(loc.prefix ? `${loc.prefix}/${name}` : name);
      try {
        await blob.uploadData(bytes, { conditions: { ifNoneMatch: '*' }, blobHTTPHeaders: { blobContentType: 'application/x-ndjson' } });
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode !== 409) throw err;
      }
    },
  };
}
