/**
 * Files that survive a crash whole: fsync of a file or folder, and the write-temp-then-rename that
 * leaves either the old file or the whole new one. One definition for the model files (agent,
 * collector cache, cloud registry), the rollout state and the lakehouse's Parquet files and folders.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/** fsync of a file, or of a folder (what makes a rename or a new entry in it durable). */
export function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes a file so that after a crash it is either the old one or the whole new one: temp file, fsync, rename, fsync of the folder. */
export function writeFileDurably(path: string, data: Uint8Array | string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o644);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  fsyncPath(dirname(path));
}
