/**
 * FileSink: for sites with no uplink. Appends each spooled message as one JSON line to
 * `<dir>/edgetwin-<site>-<start time>.jsonl.part`, fsyncs before reporting success, and on
 * rotation (by size or age) renames the file to `….jsonl`: whatever picks files up (a USB stick,
 * rsync, a later replay into the cloud ingest) takes only `*.jsonl`, which are complete.
 */
import { mkdirSync, readdirSync, renameSync, statSync, truncateSync, openSync, readSync, closeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import Type, { type Static } from 'typebox';
import { Section } from '../../common/config.js';
import type { Sink, SinkBatch, SinkWriteResult } from './sink.js';

export const fileSinkConfigSchema = Section({
  enabled: Type.Boolean({ default: false }),
  /** Defaults to <stateDir>/outbound. */
  dir: Type.Optional(Type.String({ minLength: 1 })),
  /** Start a new file once the current one reaches this size. */
  maxFileBytes: Type.Integer({ minimum: 1024, default: 64 * 1024 * 1024 }),
  /** …or once it is this old (checked at each write and every minute). */
  maxFileAgeMs: Type.Integer({ minimum: 1000, default: 3_600_000 }),
  /** fsync after every batch: the runner moves its cursor only after write() resolves. */
  fsync: Type.Boolean({ default: true }),
});
export type FileSinkConfig = Static<typeof fileSinkConfigSchema>;

const PART = '.part';

export class FileSink implements Sink {
  readonly name = 'file';
  private fh: FileHandle | undefined;
  private path = '';
  private bytes = 0;
  private openedAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private seqInSecond = 0;
  private lastStamp = '';

  constructor(
    private readonly cfg: FileSinkConfig & { dir: string },
    private readonly siteId: string,
  ) {}

  async connect(): Promise<void> {
    mkdirSync(this.cfg.dir, { recursive: true });
    this.recoverPartFiles();
    this.timer = setInterval(() => void this.rotateIfDue(), Math.min(this.cfg.maxFileAgeMs, 60_000));
    this.timer.unref();
  }

  /** Files left open by a crash: cut a half-written last line, then publish them as complete. */
  private recoverPartFiles(): void {
    for (const name of readdirSync(this.cfg.dir)) {
      if (!name.endsWith(PART)) continue;
      const p = join(this.cfg.dir, name);
      truncateToLastNewline(p);
      if (statSync(p).size === 0) renameSync(p, p.slice(0, -PART.length) + '.empty');
      else renameSync(p, p.slice(0, -PART.length));
    }
  }

  async write(batch: SinkBatch): Promise<SinkWriteResult> {
    await this.rotateIfDue();
    if (!this.fh) await this.openNext();
    let text = '';
    for (const m of batch.messages) {
      // Raw line breaks in JSON can only be whitespace (inside strings they are escaped), so a
      // pretty-printed payload becomes one line without changing its meaning.
      text += (m.payload.includes('\n') ? m.payload.replace(/\r?\n/g, ' ') : m.payload) + '\n';
    }
    await this.fh!.write(text);
    if (this.cfg.fsync) await this.fh!.datasync();
    this.bytes += Buffer.byteLength(text);
    return {};
  }

  private async rotateIfDue(): Promise<void> {
    if (!this.fh) return;
    if (this.bytes >= this.cfg.maxFileBytes || Date.now() - this.openedAt >= this.cfg.maxFileAgeMs) await this.finish();
  }

  private async openNext(): Promise<void> {
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    this.seqInSecond = stamp === this.lastStamp ? this.seqInSecond + 1 : 0;
    this.lastStamp = stamp;
    this.path = join(this.cfg.dir, `edgetwin-${this.siteId}-${stamp}-${this.seqInSecond}.jsonl${PART}`);
    this.fh = await open(this.path, 'a', 0o600);
    this.bytes = 0;
    this.openedAt = Date.now();
  }

  /** Closes the current file and gives it its final name. */
  private async finish(): Promise<void> {
    const fh = this.fh;
    if (!fh) return;
    this.fh = undefined;
    await fh.close();
    renameSync(this.path, this.path.slice(0, -PART.length));
  }

  /** Completed files, oldest first (for operators and tests). */
  files(): string[] {
    return readdirSync(this.cfg.dir)
      .filter((n) => n.endsWith('.jsonl'))
      .sort()
      .map((n) => join(this.cfg.dir, n));
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.finish();
  }
}

function truncateToLastNewline(path: string): void {
  const size = statSync(path).size;
  if (size === 0) return;
  const fd = openSync(path, 'r');
  try {
    const chunk = Buffer.alloc(Math.min(size, 1 << 20));
    let end = size;
    while (end > 0) {
      const start = Math.max(0, end - chunk.length);
      const n = readSync(fd, chunk, 0, end - start, start);
      const i = chunk.subarray(0, n).lastIndexOf(0x0a);
      if (i >= 0) {
        if (start + i + 1 < size) truncateSync(path, start + i + 1);
        return;
      }
      end = start;
    }
    truncateSync(path, 0);
  } finally {
    closeSync(fd);
  }
}
