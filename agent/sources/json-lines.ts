/**
 * JSON lines on stdin (or a file/FIFO): each line is one reading, an array of readings, or
 * `{"readings": [...]}`. A bad line is refused whole with EDGETWIN_ERR_BAD_READING and its line
 * number, counted, and skipped; the lines after it carry on. Reading pauses while the agent has no
 * room (the producer's pipe fills up and it blocks), so a fast producer cannot exhaust memory.
 * End of input finishes the source; the agent keeps running. Lines read but not yet committed
 * when the agent dies are lost (the producer was never told otherwise); use HTTP ingest where the
 * producer needs an acknowledgement. A regular file is read from its start at every start.
 */
import { createReadStream } from 'node:fs';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import Type, { type Static } from 'typebox';
import { configDefaults, Section } from '../../common/config.js';
import { EdgetwinError, ErrorCodes, errorMessage } from '../../common/errors.js';
import type { Source, SourceContext, SourceReading } from '../types.js';
import { readLines, type Line } from '../../common/lines.js';
import { parseReadings } from './reading-input.js';
import type { TimestampWindow } from '../../common/wire/storable.js';

export const jsonLinesConfigSchema = Section({
  enabled: Type.Boolean({ default: false }),
  /** `-` for stdin, or a file or FIFO path. */
  path: Type.String({ minLength: 1, default: '-' }),
  /** Longer lines are refused (and their bytes skipped). */
  maxLineBytes: Type.Integer({ minimum: 64, maximum: 64 << 20, default: 1 << 20 }),
});
export type JsonLinesConfig = Static<typeof jsonLinesConfigSchema>;
export const jsonLinesDefaults: JsonLinesConfig = configDefaults(jsonLinesConfigSchema);

/** Lines are handed on in groups of this many readings (one emit, one room check). */
const GROUP = 1000;

export class JsonLinesSource implements Source {
  readonly name = 'json-lines';
  private ctx: SourceContext | undefined;
  private stream: Readable | undefined;
  /** Closed while the source is stopped: the reader waits at it and reads nothing further. */
  private gate: { wait: Promise<void>; open: () => void } | undefined;

  constructor(
    private readonly cfg: JsonLinesConfig,
    private readonly stdin: Readable = process.stdin,
    /** Sample times accepted (config `timestamps`); a reading outside is refused with its line. */
    private readonly window?: TimestampWindow,
  ) {}

  start(ctx: SourceContext): void {
    this.ctx = ctx;
    this.gate?.open();
    this.gate = undefined;
    // One reader per input for the life of the process: a restart carries on where the last run
    // stopped (stdin and FIFOs cannot be read twice).
    if (this.stream) {
      (this.stream as Partial<Socket>).ref?.();
      return;
    }
    const stream = this.cfg.path === '-' ? this.stdin : createReadStream(this.cfg.path);
    this.stream = stream;
    const mine = (): boolean => this.stream === stream;
    this.pump(stream).then(
      () => {
        if (mine()) this.ctx?.finished();
      },
      (err) => {
        if (!mine()) return;
        this.stream = undefined;
        this.ctx?.fail(err);
      },
    );
  }

  private async pump(stream: Readable): Promise<void> {
    let group: SourceReading[] = [];
    const flush = async (ctx: SourceContext): Promise<void> => {
      if (group.length === 0) return;
      ctx.emit(group);
      group = [];
      await ctx.waitForRoom();
    };
    const where = this.cfg.path === '-' ? 'stdin' : this.cfg.path;
    for await (const lines of readLines(stream, this.cfg.maxLineBytes)) {
      await this.gate?.wait;
      const ctx = this.ctx!;
      for (const line of lines) {
        const r = this.parse(line, where);
        if (r instanceof EdgetwinError) ctx.reject(r);
        else for (const x of r) group.push(x);
        if (group.length >= GROUP) await flush(ctx);
      }
      // The input paused: what has arrived goes on now.
      await flush(ctx);
    }
  }

  /** The readings of one line, or why it is refused. */
  private parse(line: Line, where: string): SourceReading[] | EdgetwinError {
    const bad = (msg: string): EdgetwinError =>
      new EdgetwinError(ErrorCodes.BAD_READING, `${where} line ${line.n}: ${msg}`, { details: { line: line.n } });
    if ('tooLong' in line) return bad(`longer than ${this.cfg.maxLineBytes} bytes`);
    const text = line.text.trim();
    if (text === '') return [];
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (err) {
      return bad(`not valid JSON (${errorMessage(err)})`);
    }
    try {
      return parseReadings(obj, Date.now(), this.window);
    } catch (err) {
      return bad(errorMessage(err));
    }
  }

  stop(): void {
    if (!this.gate) {
      let open = (): void => undefined;
      const wait = new Promise<void>((r) => (open = r));
      this.gate = { wait, open };
    }
    const stream = this.stream;
    if (stream === this.stdin) {
      // Waiting on stdin must not keep a stopping agent alive.
      (stream as Partial<Socket>).unref?.();
    } else if (stream) {
      this.stream = undefined;
      stream.destroy();
    }
  }
}
