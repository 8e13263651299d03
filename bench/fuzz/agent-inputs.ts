/**
 * Bad input for the agent's sources, seeded: JSON lines and CSV rows that mix good records with
 * broken ones (each bad by construction, so the expected counts are known), bodies for the local
 * HTTP ingest, and a Modbus TCP server that answers with exceptions, garbage, wrong transaction
 * ids, short frames, silence and values that decode to NaN or infinity.
 */
import { writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { request } from 'undici';
import { between, pick, rng, type Rng } from '../chaos/rng.js';

export interface InputFile {
  good: number;
  bad: number;
}

const BAD_JSON_LINES = [
  '{"metric":"jl","value":1,"unit":"1"',
  '{"metric":"jl"}',
  '{"metric":"jl","value":"7","unit":"1"}',
  '{"metric":"jl","value":1,"unit":"1","x":1}',
  '{"metric":"1bad","value":1,"unit":"1"}',
  '{"metric":"jl","value":1e999,"unit":"1"}',
  '[]',
  '{"readings":5}',
  '{"readings":[{"metric":"jl"}]}',
  'null',
  '42',
  '"text"',
  '\u0000\u0001\u0002',
  "{'metric':'jl'}",
  '{"metric":"jl","value":1,"unit":"1","ts":"yesterday"}',
  '{"metric":"jl","value":1,"unit":"' + 'u'.repeat(40) + '"}',
  '{"metric":"jl","value":NaN,"unit":"1"}',
  `${'['.repeat(3000)}${']'.repeat(3000)}`,
];

/** JSON lines, `n` of them: good ones carry metric `jl` and a running value. */
export function writeJsonLines(path: string, r: Rng, n: number): InputFile {
  const lines: string[] = [];
  const f: InputFile = { good: 0, bad: 0 };
  for (let i = 0; i < n; i++) {
    if (r() < 0.5) {
      f.good++;
      lines.push(JSON.stringify({ metric: 'jl', value: f.good, unit: '1' }));
    } else {
      f.bad++;
      lines.push(pick(r, BAD_JSON_LINES));
    }
  }
  writeFileSync(path, `${lines.join('\n')}\n`);
  return f;
}

/** CSV `timestamp,csv_a`, `n` rows: good rows have a recent ISO time and an integer. */
export function writeCsv(path: string, r: Rng, n: number): InputFile {
  const rows = ['timestamp,csv_a'];
  const f: InputFile = { good: 0, bad: 0 };
  const t0 = Date.now() - n * 10;
  for (let i = 0; i < n; i++) {
    const iso = new Date(t0 + i * 10).toISOString();
    if (r() < 0.5) {
      f.good++;
      rows.push(`${iso},${f.good}`);
    } else {
      f.bad++;
      rows.push(
        pick(r, [
          `not-a-time,5`,
          `${iso},abc`,
          `${iso},`,
          `${iso},1e999`,
          `${iso},NaN`,
          `${iso},Infinity`,
          ',',
          `"${iso}",""`,
          '\u0000\u0000',
          `${iso},"1,2"`,
          `2026-13-45T99:99:99Z,1`,
        ]),
      );
    }
  }
  writeFileSync(path, `${rows.join('\n')}\n`);
  return f;
}

export interface AgentHttpFigures {
  agent_http_requests: number;
  agent_http_good_accepted: number;
  agent_http_rejected_items: number;
  agent_http_violations: number;
  agent_http_violation_samples: string[];
}

/** POSTs to the agent's `/v1/readings`: good batches (metric `http_good`) among broken ones. */
export async function fuzzAgentHttp(url: string, seed: number, requests: number, maxBodyBytes: number): Promise<AgentHttpFigures> {
  const r = rng(seed);
  const f: AgentHttpFigures = {
    agent_http_requests: 0,
    agent_http_good_accepted: 0,
    agent_http_rejected_items: 0,
    agent_http_violations: 0,
    agent_http_violation_samples: [],
  };
  const bad = (w: string): void => {
    f.agent_http_violations++;
    if (f.agent_http_violation_samples.length < 10) f.agent_http_violation_samples.push(w);
  };
  let value = 0;
  for (let i = 0; i < requests; i++) {
    const kind = between(r, 0, 5);
    let body: string | Buffer;
    let good = 0;
    if (kind === 0) {
      // Good readings mixed with bad items: the good ones are taken, the others listed.
      const items: unknown[] = [];
      for (let k = between(r, 1, 10); k > 0; k--) {
        if (r() < 0.6) {
          good++;
          items.push({ metric: 'http_good', value: ++value, unit: '1' });
        } else
          items.push(
            pick(r, [
              { metric: 'http_good' },
              { metric: 'x y', value: 1, unit: 'u' },
              { metric: 'm', value: 'v', unit: 'u' },
              null,
              5,
              { metric: 'm', value: 1, unit: 'u', ts: 'never' },
            ]),
          );
      }
      body = JSON.stringify({ readings: items });
    } else if (kind === 1) body = pick(r, ['{', '{"readings":', 'null', '[]', '{"readings":[]}', '{"readings":{}}', '\u0000', '"s"']);
    else if (kind === 2) body = Buffer.alloc(maxBodyBytes + between(r, 1, 4096), 0x20);
    else if (kind === 3) body = Buffer.from([0xff, 0xfe, 0xfd]);
    else if (kind === 4) body = JSON.stringify(Array.from({ length: 100_001 }, () => 0));
    else body = `{"metric":"http_good","value":1,"unit":"1"${'x'.repeat(between(r, 0, 10))}`;
    f.agent_http_requests++;
    let status: number;
    let text: string;
    try {
      const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      if (!(Buffer.isBuffer(body) && body.length > maxBodyBytes)) bad(`no answer: ${String(err)}`);
      continue;
    }
    let parsed: { accepted?: number; rejected?: unknown[]; code?: string } = {};
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      bad(`HTTP ${status}: not JSON: ${text.slice(0, 100)}`);
      continue;
    }
    if (status >= 500) bad(`HTTP ${status}: ${text.slice(0, 200)}`);
    if (status === 200) {
      if (parsed.accepted !== good) bad(`accepted ${parsed.accepted} of ${good} good readings`);
      f.agent_http_good_accepted += parsed.accepted ?? 0;
      f.agent_http_rejected_items += parsed.rejected?.length ?? 0;
    } else {
      if (good > 0) bad(`HTTP ${status} for a body with ${good} good readings`);
      if (!parsed.code?.startsWith('EDGETWIN_ERR_')) bad(`HTTP ${status} without a code: ${text.slice(0, 100)}`);
    }
  }
  return f;
}

/**
 * A Modbus TCP server that misbehaves: for every request it picks one answer — a correct one,
 * an exception, a value that decodes to NaN or ±infinity, garbage, a wrong transaction id, a
 * short frame, a wrong byte count, silence, or a closed connection.
 */
export class EvilModbusServer {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  readonly answers: Record<string, number> = {};
  port = 0;
  private readonly r: Rng;

  constructor(seed: number) {
    this.r = rng(seed ^ 0x0db5);
  }

  async start(): Promise<number> {
    const server = createServer((s) => this.serve(s));
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    this.port = (server.address() as { port: number }).port;
    return this.port;
  }

  private serve(s: Socket): void {
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
    s.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 12) {
        const len = buf.readUInt16BE(4);
        if (buf.length < 6 + len) return;
        const req = buf.subarray(0, 6 + len);
        buf = buf.subarray(6 + len);
        this.answer(s, req);
      }
    });
  }

  private count(k: string): void {
    this.answers[k] = (this.answers[k] ?? 0) + 1;
  }

  private answer(s: Socket, req: Buffer): void {
    const r = this.r;
    const tid = req.readUInt16BE(0);
    const unit = req[6]!;
    const fn = req[7]!;
    const qty = req.readUInt16BE(10);
    const frame = (t: number, pdu: Buffer): Buffer => {
      const h = Buffer.alloc(7);
      h.writeUInt16BE(t, 0);
      h.writeUInt16BE(0, 2);
      h.writeUInt16BE(pdu.length + 1, 4);
      h[6] = unit;
      return Buffer.concat([h, pdu]);
    };
    const regs = (words: number[]): Buffer => {
      const b = Buffer.alloc(2 + words.length * 2);
      b[0] = fn;
      b[1] = words.length * 2;
      words.forEach((w, i) => b.writeUInt16BE(w & 0xffff, 2 + i * 2));
      return b;
    };
    const words = (pair: [number, number]): number[] => (qty === 2 ? pair : [pair[0]]);
    const kind = pick(r, ['ok', 'ok', 'ok', 'exception', 'nan', 'inf', 'garbage', 'tid', 'short', 'bytecount', 'silence', 'close']);
    this.count(kind);
    switch (kind) {
      case 'ok':
        return void s.write(frame(tid, regs(words([0x4049, 0x0fdb]))));
      case 'exception':
        return void s.write(frame(tid, Buffer.from([fn | 0x80, between(r, 1, 11)])));
      case 'nan':
        return void s.write(frame(tid, regs(words([0x7fc0, 0x0000]))));
      case 'inf':
        return void s.write(frame(tid, regs(words([r() < 0.5 ? 0x7f80 : 0xff80, 0x0000]))));
      case 'garbage': {
        const g = Buffer.alloc(between(r, 1, 40));
        for (let i = 0; i < g.length; i++) g[i] = between(r, 0, 255);
        return void s.write(g);
      }
      case 'tid':
        return void s.write(frame((tid + between(r, 1, 100)) & 0xffff, regs(words([1, 2]))));
      case 'short':
        return void s.write(frame(tid, regs(words([1, 2]))).subarray(0, between(r, 1, 8)));
      case 'bytecount': {
        const b = regs(words([1, 2]));
        b[1] = between(r, 0, 255);
        return void s.write(frame(tid, b));
      }
      case 'silence':
        return;
      default:
        s.destroy();
    }
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const srv = this.server;
    this.server = undefined;
    if (srv) await new Promise<void>((r) => srv.close(() => r()));
  }
}
