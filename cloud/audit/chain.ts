/**
 * The audit export's format: JSON-lines segments, every line hash-chained to the one before it
 * (across segments too). Line n carries `seq` (1, 2, 3… with no gaps), the audit entry, `prev` (the
 * hash of line n−1; 64 zeros for the first) and `hash` = SHA-256(prev + "\n" + the entry's JSON).
 * A sealed segment ends with a seal line naming its line count and last hash, so a cut-off end is
 * seen too. Changing a line breaks its own hash; removing one leaves a gap in `seq` and a `prev`
 * that does not match; re-hashing everything after a change is what the immutable Blob copy (a
 * time-based retention policy: nobody, not even an admin, can change or delete it for 7 years)
 * and an anchor hash kept elsewhere catch.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditEntry } from './audit-log.js';

export const GENESIS = '0'.repeat(64);
/** `audit-000001.jsonl` (sealed) or `audit-000001.jsonl.open` (being written). */
export const SEGMENT_RE = /^audit-(\d{6})\.jsonl(\.open)?$/;
export const segmentName = (n: number, open: boolean): string => `audit-${String(n).padStart(6, '0')}.jsonl${open ? '.open' : ''}`;

/** One exported audit entry: its place in the chain and the audit log's entry (hashed in entryJson's order). */
export interface ChainEntry extends AuditEntry {
  seq: number;
}

export interface ChainLine extends ChainEntry {
  prev: string;
  hash: string;
}

export interface SealLine {
  seal: true;
  segment: number;
  lines: number;
  lastSeq: number;
  prev: string;
  hash: string;
}

/** The entry's fields in their fixed order: the bytes that are hashed. */
export function entryJson(e: ChainEntry): string {
  return JSON.stringify({
    seq: e.seq,
    id: e.id,
    at: e.at,
    actor: e.actor,
    actorId: e.actorId,
    role: e.role,
    action: e.action,
    device: e.device,
    site: e.site,
    detail: e.detail,
  });
}

export function chainHash(prev: string, body: string): string {
  return createHash('sha256').update(prev).update('\n').update(body).digest('hex');
}

export function chainLine(e: ChainEntry, prev: string): ChainLine {
  return { ...JSON.parse(entryJson(e)), prev, hash: chainHash(prev, entryJson(e)) } as ChainLine;
}

export function sealLine(segment: number, lines: number, lastSeq: number, prev: string): SealLine {
  const body = JSON.stringify({ seal: true, segment, lines, lastSeq });
  return { seal: true, segment, lines, lastSeq, prev, hash: chainHash(prev, body) };
}

export interface VerifyProblem {
  file: string;
  /** 1-based line number in `file`. */
  line: number;
  kind: 'changed' | 'missing' | 'malformed' | 'truncated' | 'reordered';
  message: string;
}

export interface VerifyResult {
  ok: boolean;
  segments: number;
  lines: number;
  lastSeq: number;
  lastId: number;
  lastHash: string;
  problems: VerifyProblem[];
}

export function listSegments(dir: string): { n: number; file: string; open: boolean }[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .map((f) => ({ f, m: SEGMENT_RE.exec(f) }))
    .filter((x) => x.m)
    .map((x) => ({ n: Number(x.m![1]), file: x.f, open: x.m![2] !== undefined }))
    .sort((a, b) => a.n - b.n);
}

/**
 * Checks every segment in `dir` end to end and names each problem by file and line: a changed
 * line, a missing one (a gap in seq, or a prev that does not match), a reordered or malformed one,
 * a sealed segment cut short. Verification goes on after a problem, re-anchored at the next line,
 * so one edit is reported once and later damage is still found.
 */
export function verifyChain(dir: string): VerifyResult {
  const problems: VerifyProblem[] = [];
  const segs = listSegments(dir);
  let prev = GENESIS;
  let seq = 0;
  let lastId = 0;
  let lines = 0;
  segs.forEach((s, i) => {
    if (i > 0 && s.n !== segs[i - 1]!.n + 1)
      problems.push({ file: s.file, line: 1, kind: 'missing', message: `segment ${segs[i - 1]!.n + 1} is missing before ${s.file}` });
    if (s.open && i !== segs.length - 1)
      problems.push({ file: s.file, line: 1, kind: 'malformed', message: 'an open segment that is not the last one' });
    const text = readFileSync(join(dir, s.file), 'utf8');
    const rows = text.split('\n');
    if (rows[rows.length - 1] === '') rows.pop();
    let inSegment = 0;
    let sealed = false;
    rows.forEach((raw, idx) => {
      const where = { file: s.file, line: idx + 1 };
      let o: (ChainLine & Partial<SealLine>) | undefined;
      try {
        o = JSON.parse(raw) as ChainLine & Partial<SealLine>;
      } catch {
        problems.push({ ...where, kind: 'malformed', message: 'not JSON' });
        return;
      }
      if (sealed) problems.push({ ...where, kind: 'malformed', message: 'a line after the seal' });
      if (o.seal === true) {
        sealed = true;
        const want = sealLine(o.segment ?? -1, o.lines ?? -1, o.lastSeq ?? -1, o.prev);
        if (o.prev !== prev)
          problems.push({
            ...where,
            kind: 'truncated',
            message: `the seal follows a line that is not the segment's last (seq ${o.lastSeq} expected, ${seq} found)`,
          });
        else if (want.hash !== o.hash) problems.push({ ...where, kind: 'changed', message: 'the seal line was changed' });
        else if (o.lines !== inSegment || o.lastSeq !== seq)
          problems.push({
            ...where,
            kind: 'truncated',
            message: `the seal says ${o.lines} lines up to seq ${o.lastSeq}; ${inSegment} up to ${seq} are there`,
          });
        prev = o.hash;
        return;
      }
      inSegment++;
      lines++;
      const body = entryJson(o);
      if (typeof o.seq !== 'number') {
        problems.push({ ...where, kind: 'malformed', message: 'no seq' });
        return;
      }
      if (o.seq > seq + 1)
        problems.push({
          ...where,
          kind: 'missing',
          message: `${o.seq - seq - 1} line(s) missing before this one (seq ${seq + 1}${o.seq - seq > 2 ? `–${o.seq - 1}` : ''})`,
        });
      else if (o.seq <= seq) problems.push({ ...where, kind: 'reordered', message: `seq ${o.seq} after seq ${seq}` });
      else if (chainHash(o.prev, body) !== o.hash)
        problems.push({
          ...where,
          kind: 'changed',
          message: `line seq ${o.seq} (audit id ${o.id}) was changed: its hash does not match its content`,
        });
      else if (o.prev !== prev)
        problems.push({
          ...where,
          kind: 'changed',
          message: `line seq ${o.seq} does not follow the line before it (that line was changed, or this one re-hashed)`,
        });
      prev = o.hash;
      seq = Math.max(seq, o.seq);
      lastId = Math.max(lastId, Number(o.id) || 0);
    });
    if (!s.open && !sealed)
      problems.push({ file: s.file, line: rows.length, kind: 'truncated', message: 'a sealed segment without its seal line (cut short?)' });
  });
  return { ok: problems.length === 0, segments: segs.length, lines, lastSeq: seq, lastId, lastHash: prev, problems };
}
