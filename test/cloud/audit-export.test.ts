/**
 * The audit export: entries from the store become hash-chained JSON-lines segments that verify end
 * to end; every kind of tampering is named by file and line (a changed line, a changed and
 * re-hashed line, a removed line, a cut-off sealed segment, a removed segment); a torn last line
 * after a crash is cut and the export goes on with no entry lost or doubled; sealed segments are
 * copied to a Blob container (protocol-level Blob server on loopback) and never overwritten.
 */
import { createHash } from 'node:crypto';
import { appendFileSync, cpSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { AuditLog } from '../../cloud/audit/audit-log.js';
import { verifyChain } from '../../cloud/audit/chain.js';
import { AuditExporter, auditExportDefaults, blobUploader } from '../../cloud/audit/export.js';
import { SqliteStore } from '../../cloud/store/sqlite-store.js';
import { runAuditVerify } from '../../cli/cloud-audit.js';
import { createLogger } from '../../common/log.js';
import { createRegistry } from '../../common/metrics.js';
import { BlobTestServer } from '../helpers/blob-server.js';
import { tempDir } from '../helpers/util.js';

const log = createLogger('test', { level: 'silent' });
const admin = { id: 't_a', name: 'alice', role: 'admin' as const, site: null };

t.test('audit export', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const store = await SqliteStore.open({ stateDir: dir });
  t.teardown(() => store.close());
  const audit = new AuditLog(store);
  const blob = await new BlobTestServer().start();
  t.teardown(() => blob.close());
  const out = join(dir, 'audit');
  const exporter = new AuditExporter({
    store,
    cfg: { ...auditExportDefaults, segmentMaxBytes: 3000, gapWaitMs: 0 },
    dir: out,
    log,
    registry: createRegistry('test'),
    uploader: await blobUploader(`${blob.endpoint}/audit-immutable/prod`, blob.connectionString),
  });
  const record = async (n: number, from = 0): Promise<void> => {
    for (let i = 0; i < n; i++)
      await audit.record(
        store,
        admin,
        i % 3 === 0 ? 'desired.patch' : i % 3 === 1 ? 'token.create' : 'alert.ack',
        { device: `d-${from + i}`, site: 'site-a' },
        { n: from + i, note: 'ünïcødé ✓' },
      );
  };
  const lines = (file: string): string[] => readFileSync(join(out, file), 'utf8').split('\n').filter(Boolean);
  const check = (d = out) => {
    const printed: string[] = [];
    try {
      runAuditVerify(d, (h) => printed.push(h));
      return { ok: true, text: printed.join('\n') };
    } catch (err) {
      return { ok: false, text: printed.join('\n'), code: (err as { code?: string }).code };
    }
  };

  await t.test('exports every entry once, in order, in sealed segments that verify', async (t) => {
    await record(40);
    t.equal(await exporter.exportOnce(), 40);
    t.equal(await exporter.exportOnce(), 0, 'nothing twice');
    await record(5, 40);
    t.equal(await exporter.exportOnce(), 5);
    const r = verifyChain(out);
    t.same([r.ok, r.lines, r.lastSeq, r.lastId], [true, 45, 45, 45]);
    t.ok(r.segments >= 3, `${r.segments} segments (3000-byte segments)`);
    const ids = readdirSync(out)
      .filter((f) => /\.jsonl(\.open)?$/.test(f))
      .flatMap((f) => lines(f))
      .filter((l) => !l.startsWith('{"seal"'))
      .map((l) => JSON.parse(l).id);
    t.same(
      ids,
      Array.from({ length: 45 }, (_, i) => i + 1),
      'audit ids 1..45, each once',
    );
    t.match(check().text, /^ok: 45 lines in \d+ segments up to seq 45 \(audit id 45\); last hash [0-9a-f]{64}$/);
    const sealed = readdirSync(out).filter((f) => f.endsWith('.jsonl'));
    t.same(
      blob.names('audit-immutable'),
      sealed.map((f) => `prod/${f}`),
      'sealed segments copied to the container',
    );
    t.same(blob.blob('audit-immutable', `prod/${sealed[0]}`), readFileSync(join(out, sealed[0]!)));
  });

  await t.test('tampering is named by file and line', async (t) => {
    const work = join(dir, 'tamper');
    const fresh = (): string => {
      rmSync(work, { recursive: true, force: true });
      cpSync(out, work, { recursive: true });
      return work;
    };
    const first = readdirSync(out).filter((f) => f.endsWith('.jsonl'))[0]!;
    const edit = (fn: (ls: string[]) => string[]): void => {
      const ls = readFileSync(join(work, first), 'utf8').split('\n').filter(Boolean);
      writeFileSync(join(work, first), `${fn(ls).join('\n')}\n`);
    };

    fresh();
    edit((ls) => ls.map((l, i) => (i === 2 ? l.replace('"actor":"alice"', '"actor":"mallory"') : l)));
    let r = check(work);
    t.equal(r.code, 'EDGETWIN_ERR_AUDIT_CHAIN');
    t.match(r.text, new RegExp(`${first}:3: changed: line seq 3 \\(audit id 3\\) was changed`));

    fresh();
    edit((ls) =>
      ls.map((l, i) => {
        if (i !== 2) return l;
        const o = JSON.parse(l);
        o.detail = { n: 999 };
        const body = JSON.stringify({
          seq: o.seq,
          id: o.id,
          at: o.at,
          actor: o.actor,
          actorId: o.actorId,
          role: o.role,
          action: o.action,
          device: o.device,
          site: o.site,
          detail: o.detail,
        });
        o.hash = createHash('sha256').update(o.prev).update('\n').update(body).digest('hex');
        return JSON.stringify(o);
      }),
    );
    r = check(work);
    t.match(
      r.text,
      new RegExp(`${first}:4: changed: line seq 4 does not follow the line before it`),
      'a re-hashed line is caught at the next one',
    );

    fresh();
    edit((ls) => ls.filter((_, i) => i !== 4));
    t.match(check(work).text, new RegExp(`${first}:5: missing: 1 line\\(s\\) missing before this one \\(seq 5\\)`));

    fresh();
    edit((ls) => ls.slice(0, -3));
    t.match(check(work).text, new RegExp(`${first}:\\d+: truncated: a sealed segment without its seal line`), 'end cut off');

    fresh();
    rmSync(join(work, readdirSync(work).filter((f) => f.endsWith('.jsonl'))[1]!));
    t.match(check(work).text, /missing: segment 2 is missing/);

    fresh();
    edit((ls) => [ls[1]!, ls[0]!, ...ls.slice(2)]);
    t.match(check(work).text, /reordered|missing/, 'swapped lines');
  });

  await t.test('a torn last line after a crash is cut; nothing lost or doubled', async (t) => {
    await record(1, 45);
    t.equal(await exporter.exportOnce(), 1);
    const open = readdirSync(out).find((f) => f.endsWith('.jsonl.open'))!;
    appendFileSync(join(out, open), '{"seq":47,"id":47,"at":"2026-');
    await record(3, 46);
    t.equal(await exporter.exportOnce(), 3);
    const r = verifyChain(out);
    t.same([r.ok, r.lines, r.lastId], [true, 49, 49]);
  });

  await t.test('sealed copies are never overwritten', async (t) => {
    const sealed = readdirSync(out).filter((f) => f.endsWith('.jsonl'))[0]!;
    const before = blob.blob('audit-immutable', `prod/${sealed}`);
    const up = await blobUploader(`${blob.endpoint}/audit-immutable/prod`, blob.connectionString);
    await up.put(sealed, Buffer.from('forged'));
    t.same(blob.blob('audit-immutable', `prod/${sealed}`), before, 'If-None-Match: * kept the original');
  });
});
