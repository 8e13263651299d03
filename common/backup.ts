/**
 * Backup and restore of a daemon's state directory (twin store, device registry, spool, lakehouse):
 * SQLite files through SQLite's online backup API (consistent while the daemon runs), every other
 * file (Parquet, JSON) copied as is; a manifest lists each file with its size and sha256, and a
 * restore refuses a backup whose files do not match it.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import Database from 'better-sqlite3';
import { EdgetwinError, ErrorCodes } from './errors.js';
import { LOCK_FILE, LOCK_INFO_FILE, StateLock } from './state-lock.js';

export const MANIFEST = 'edgetwin-backup.json';

export interface BackupFile {
  path: string;
  kind: 'sqlite' | 'file';
  bytes: number;
  sha256: string;
}

export interface BackupManifest {
  format: 1;
  createdAt: string;
  source: string;
  files: BackupFile[];
}

/** WAL side files and quarantined copies are not state; temp files are half-written. */
const SKIP = /(-wal|-shm|-journal|\.tmp|\.corrupt-[^/]*)$/;

function walk(dir: string, root = dir): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p, root));
    // The lock files belong to the running daemon, not to its state; reading the lock file here would
    // even drop the daemon's lock if this ran in its process (POSIX locks die with any close of the file).
    else if (e.isFile() && !SKIP.test(e.name) && ![MANIFEST, LOCK_FILE, LOCK_INFO_FILE].includes(e.name)) out.push(relative(root, p));
  }
  return out.sort();
}

function isSqlite(file: string): boolean {
  const fd = readFileSync(file).subarray(0, 16).toString('latin1');
  return fd === 'SQLite format 3\u0000';
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** `onFile` gets each file once copied, with how many are done out of how many (for progress). */
export async function backup(
  stateDir: string,
  outDir: string,
  onFile?: (f: BackupFile, done: number, total: number) => void,
): Promise<BackupManifest> {
  if (!existsSync(stateDir)) throw new EdgetwinError(ErrorCodes.USAGE, `state directory ${stateDir} does not exist`);
  if (existsSync(join(outDir, MANIFEST)))
    throw new EdgetwinError(ErrorCodes.USAGE, `${outDir} already holds a backup; choose an empty directory`);
  const files: BackupFile[] = [];
  const rels = walk(stateDir);
  for (const rel of rels) {
    const src = join(stateDir, rel);
    const dst = join(outDir, rel);
    mkdirSync(dirname(dst), { recursive: true });
    let kind: BackupFile['kind'] = 'file';
    if (isSqlite(src)) {
      kind = 'sqlite';
      const db = new Database(src, { readonly: true, fileMustExist: true });
      try {
        await db.backup(dst);
      } finally {
        db.close();
      }
    } else {
      copyFileSync(src, dst);
    }
    const f: BackupFile = { path: rel, kind, bytes: statSync(dst).size, sha256: sha256(dst) };
    files.push(f);
    onFile?.(f, files.length, rels.length);
  }
  const manifest: BackupManifest = { format: 1, createdAt: new Date().toISOString(), source: stateDir, files };
  writeFileSync(join(outDir, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

export function readManifest(backupDir: string): BackupManifest {
  const file = join(backupDir, MANIFEST);
  let m: BackupManifest;
  try {
    m = JSON.parse(readFileSync(file, 'utf8')) as BackupManifest;
  } catch (cause) {
    throw new EdgetwinError(ErrorCodes.USAGE, `${file} is missing or unreadable: not an edgetwin backup`, { cause });
  }
  if (m.format !== 1 || !Array.isArray(m.files)) throw new EdgetwinError(ErrorCodes.USAGE, `${file}: unknown backup format`);
  return m;
}

/** Checks every file against the manifest; returns the problems (empty when the backup is intact). */
export function verifyBackup(backupDir: string): string[] {
  const problems: string[] = [];
  for (const f of readManifest(backupDir).files) {
    const p = join(backupDir, f.path);
    if (!existsSync(p)) problems.push(`${f.path}: missing`);
    else if (sha256(p) !== f.sha256) problems.push(`${f.path}: checksum mismatch`);
  }
  return problems;
}

/**
 * Restores into stateDir, which must not be in use: the daemon's state lock is taken for the whole
 * restore, so a running daemon makes it fail (EDGETWIN_ERR_STATE_LOCKED, naming the daemon) and a
 * daemon started meanwhile waits for nothing but refuses. An existing state directory is moved
 * aside to `<stateDir>.before-restore-<time>`, never deleted.
 */
export function restore(
  backupDir: string,
  stateDir: string,
  onFile?: (done: number, total: number) => void,
): { files: number; movedAside?: string } {
  const problems = verifyBackup(backupDir);
  if (problems.length)
    throw new EdgetwinError(ErrorCodes.STORE_CORRUPT, `backup ${backupDir} is damaged: ${problems.slice(0, 5).join('; ')}`);
  const manifest = readManifest(backupDir);
  const lock = existsSync(stateDir) ? StateLock.acquire(stateDir, 'edgetwin restore') : undefined;
  try {
    return restoreLocked(manifest, backupDir, stateDir, lock, onFile);
  } finally {
    lock?.release();
  }
}

function restoreLocked(
  manifest: BackupManifest,
  backupDir: string,
  stateDir: string,
  lock: StateLock | undefined,
  onFile?: (done: number, total: number) => void,
): { files: number; movedAside?: string } {
  const staging = `${stateDir}.restoring-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  for (const [i, f] of manifest.files.entries()) {
    const dst = join(staging, f.path);
    mkdirSync(dirname(dst), { recursive: true });
    copyFileSync(join(backupDir, f.path), dst);
    onFile?.(i + 1, manifest.files.length);
  }
  let movedAside: string | undefined;
  if (existsSync(stateDir)) {
    movedAside = `${stateDir}.before-restore-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    renameSync(stateDir, movedAside);
    lock?.movedTo(movedAside);
  }
  mkdirSync(dirname(stateDir), { recursive: true });
  renameSync(staging, stateDir);
  return movedAside ? { files: manifest.files.length, movedAside } : { files: manifest.files.length };
}
