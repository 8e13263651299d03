/**
 * Line splitting for stream input (the agent's stdin JSON lines and CSV replay, the CLI's
 * backfill) with a cap on line length: a producer that never sends a newline must not grow
 * memory without bound. Lines
 * come in groups, one per chunk read, so a consumer can hand on what it has whenever the input
 * pauses (a slow producer's readings must not wait for more to arrive).
 */
import type { Readable } from 'node:stream';

export type Line =
  | { n: number; text: string; bytesRead: number }
  /** A line longer than maxLineBytes; its content is discarded up to the next newline. */
  | { n: number; tooLong: true; bytesRead: number };

export async function* readLines(stream: Readable, maxLineBytes: number, signal?: AbortSignal): AsyncGenerator<Line[]> {
  let parts: Buffer[] = [];
  let partBytes = 0;
  let skipping = false;
  let n = 0;
  let bytesRead = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    if (signal?.aborted) return;
    const out: Line[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl === -1 ? chunk.length : nl;
      const piece = chunk.subarray(start, end);
      if (!skipping) {
        partBytes += piece.length;
        if (partBytes > maxLineBytes) {
          skipping = true;
          parts = [];
        } else if (piece.length > 0) parts.push(piece);
      }
      if (nl === -1) {
        bytesRead += chunk.length - start;
        break;
      }
      bytesRead += nl + 1 - start;
      n++;
      if (skipping) out.push({ n, tooLong: true, bytesRead });
      else out.push({ n, text: stripCr(Buffer.concat(parts, partBytes).toString('utf8')), bytesRead });
      parts = [];
      partBytes = 0;
      skipping = false;
      start = nl + 1;
    }
    if (out.length > 0) yield out;
  }
  if (partBytes > 0 || skipping) {
    n++;
    yield [skipping ? { n, tooLong: true, bytesRead } : { n, text: stripCr(Buffer.concat(parts, partBytes).toString('utf8')), bytesRead }];
  }
}

function stripCr(s: string): string {
  return s.endsWith('\r') ? s.slice(0, -1) : s;
}
