/**
 * The outbox never fills the disk: under a flood against a tiny maxBytes, the database file plus
 * its WAL stay within the cap (plus the documented margin) after every commit, the oldest
 * telemetry goes first, alerts last, and every drop is counted. Also: maxAgeMs, whenFull=block,
 * and drops undone by a rollback are not counted.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { ErrorCodes } from '../../common/errors.js';
import { createRegistry, type Registry } from '../../common/metrics.js';
import { FILE_CAP_MARGIN_BYTES, LANE_NORMAL, LANE_PRIORITY, SqliteOutbox, type OutboxConfig } from '../../common/outbox/outbox.js';
import { openOutbox } from '../helpers/outbox.js';
import { CountingSource, startAgent, tempDir, waitFor } from '../helpers/stack.js';

function reading(seq: number): string {
  return JSON.stringify({
    seq,
    ts: 1_763_913_600_000 + seq,
    metric: 'temperature',
    value: Math.round(Math.sin(seq) * 1e5) / 1e3,
    unit: 'degC',
  });
}

function capped(dir: string, maxFileBytes: number, over: Partial<OutboxConfig> = {}, registry?: Registry): SqliteOutbox {
  return openOutbox(dir, { maxBytes: maxFileBytes, maxFileBytes, ...over }, registry);
}

async function metricValue(reg: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const m = (await reg.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => String(x.labels[k]) === val));
  return Number(v?.value ?? 0);
}

t.test('a flood never takes the file plus WAL over maxBytes, and counts every drop', async (t) => {
  for (const cap of [256 * 1024, 1024 * 1024]) {
    const { dir, cleanup } = tempDir();
    t.teardown(cleanup);
    const reg = createRegistry('test');
    const o = capped(dir, cap, {}, reg);
    const perTxn = Math.max(1, Math.floor(o.txnMaxBytes / 100));
    let seq = 0;
    let peak = 0;
    for (const [burst, times] of [
      [1, 60],
      [7, 60],
      [40, 100],
      [perTxn, 400],
    ] as const) {
      for (let k = 0; k < times; k++) {
        const items = Array.from({ length: burst }, () => ({ body: reading(++seq), grp: 1 }));
        o.append(items);
        peak = Math.max(peak, o.footprint().total);
      }
    }
    t.ok(peak <= cap + FILE_CAP_MARGIN_BYTES, `cap ${cap}: peak ${peak} bytes ≤ cap + ${FILE_CAP_MARGIN_BYTES}`);
    t.ok(peak > cap / 2, `cap ${cap}: the flood did fill the outbox (peak ${peak})`);
    const { rows } = o.depth();
    const dropped = await metricValue(reg, 'edgetwin_outbox_dropped_total', { lane: '1', reason: 'full' });
    t.equal(dropped + rows, seq, `cap ${cap}: every reading is either queued or counted as dropped (${dropped} dropped)`);
    const kept = o.read(LANE_NORMAL, 0, rows).map((r) => (JSON.parse(r.body) as { seq: number }).seq);
    t.same(
      kept,
      Array.from({ length: rows }, (_, i) => seq - rows + 1 + i),
      `cap ${cap}: the newest readings are the ones kept`,
    );
    o.close();
  }
});

t.test('draining a full outbox gives the space back, a step at a time, within the cap', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cap = 1 << 20;
  const o = capped(dir, cap);
  let seq = 0;
  for (let k = 0; k < 400; k++) o.append(Array.from({ length: 50 }, () => ({ body: reading(++seq) })));
  const full = o.db.pragma('page_count', { simple: true }) as number;
  let peak = 0;
  while (o.depth().rows > 0) {
    const rows = o.read(LANE_NORMAL, 0, 100);
    o.ack(LANE_NORMAL, rows[0]!.id, rows[rows.length - 1]!.id);
    peak = Math.max(peak, o.footprint().total);
  }
  t.ok(peak <= cap + FILE_CAP_MARGIN_BYTES, `peak ${peak} bytes while draining`);
  const after = o.db.pragma('page_count', { simple: true }) as number;
  t.ok(after < full / 2, `the file shrank from ${full} to ${after} pages`);
  o.close();
});

t.test('alerts are dropped last', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const o = capped(dir, 256 * 1024);
  o.append([{ body: '{"alert":1}', lane: LANE_PRIORITY }]);
  for (let k = 0; k < 200; k++) o.append(Array.from({ length: 100 }, (_, i) => ({ body: reading(k * 100 + i) })));
  t.same(
    o.read(LANE_PRIORITY, 0, 10).map((r) => r.body),
    ['{"alert":1}'],
    'the alert outlived 20 000 readings of telemetry',
  );
  t.ok(o.depth().rows < 20000, 'telemetry was dropped');
  o.close();
});

t.test('whenFull=block refuses writes at the file cap and accepts them once rows are acknowledged', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const o = capped(dir, 256 * 1024, { whenFull: 'block' });
  let refused: unknown;
  let seq = 0;
  for (let k = 0; k < 10000 && !refused; k++) {
    try {
      o.append(Array.from({ length: 10 }, () => ({ body: reading(++seq) })));
    } catch (err) {
      refused = err;
    }
  }
  t.match(refused, { code: ErrorCodes.STORE_FULL }, 'refused with EDGETWIN_ERR_STORE_FULL');
  const before = o.depth().rows;
  t.equal(before, seq - 10, 'nothing of the refused write was stored, nothing older was dropped');
  t.ok(o.footprint().total <= 256 * 1024 + FILE_CAP_MARGIN_BYTES, 'within the cap');
  const half = o.read(LANE_NORMAL, 0, Math.floor(before / 2));
  o.ack(LANE_NORMAL, half[0]!.id, half[half.length - 1]!.id);
  o.append(Array.from({ length: 10 }, () => ({ body: reading(++seq) })));
  t.equal(o.depth().rows, before - half.length + 10, 'room again after an acknowledgement');
  o.close();
});

t.test('whenFull=block takes a write larger than maxBytes into an empty store (no writer can livelock)', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const o = openOutbox(dir, { maxBytes: 4096, whenFull: 'block' });
  o.append([{ body: 'a'.repeat(3000) }, { body: 'b'.repeat(3000) }]);
  t.equal(o.depth().rows, 2, 'a group commit of 6000 bytes into an empty 4096-byte store goes in');
  t.throws(() => o.append([{ body: 'c' }]), { code: ErrorCodes.STORE_FULL }, 'after that, writes wait for room as usual');
  o.ack(LANE_NORMAL, 0, Number.MAX_SAFE_INTEGER);
  o.append([{ body: 'c' }]);
  t.equal(o.depth().rows, 1);
  o.close();
});

t.test('rows older than maxAgeMs are dropped and counted', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const reg = createRegistry('test');
  const o = capped(dir, 1 << 20, { maxAgeMs: 60_000 }, reg);
  o.append([{ body: '"old-1"' }, { body: '"old-2"' }, { body: '"alert"', lane: LANE_PRIORITY }]);
  t.equal(o.expire(), 0, 'nothing is old yet');
  const later = Date.now() + 61_000;
  t.equal(o.expire(later), 3, 'all three are past maxAgeMs');
  t.equal(o.depth().rows, 0);
  t.equal(await metricValue(reg, 'edgetwin_outbox_dropped_total', { lane: '1', reason: 'age' }), 2);
  t.equal(await metricValue(reg, 'edgetwin_outbox_dropped_total', { lane: '0', reason: 'age' }), 1);
  o.close();
});

t.test('drops inside a transaction that rolls back are neither done nor counted', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const reg = createRegistry('test');
  const o = openOutbox(dir, { maxBytes: 4096 }, reg);
  o.append([{ body: 'x'.repeat(3000) }]);
  t.throws(() =>
    o.transaction(() => {
      o.appendInTx([{ body: 'y'.repeat(3000) }]);
      throw new Error('caller fails after the append');
    }),
  );
  t.same(o.depth(), { rows: 1, bytes: 3000 }, 'the dropped row is back');
  t.equal(await metricValue(reg, 'edgetwin_outbox_dropped_total', { lane: '1', reason: 'full' }), 0, 'and not counted');
  o.close();
});

t.test('an outbox file from before the file cap is converted on open', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const db = new Database(join(dir, 'o.db'));
  db.pragma('journal_mode = WAL');
  db.exec(
    'CREATE TABLE queue (id INTEGER PRIMARY KEY AUTOINCREMENT, lane INTEGER NOT NULL, grp INTEGER NOT NULL, key TEXT, bytes INTEGER NOT NULL, body TEXT NOT NULL)',
  );
  db.prepare('INSERT INTO queue (lane, grp, key, bytes, body) VALUES (1, 3, NULL, 3, ?)').run('"a"');
  db.close();
  const o = capped(dir, 1 << 20, { maxAgeMs: 1000 });
  t.equal(o.db.pragma('auto_vacuum', { simple: true }), 2, 'incremental auto-vacuum');
  const rows = o.read(LANE_NORMAL, 0, 10);
  t.same(
    rows.map((r) => [r.body, r.grp]),
    [['"a"', 3]],
    'the old row is kept',
  );
  t.ok(Date.now() - rows[0]!.at < 60_000, 'and stamped with the time of the upgrade, so it does not expire at once');
  o.close();
});

t.test('the agent under a flood with no collector stays within its cap and counts its drops', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cap = 512 * 1024;
  const source = new CountingSource(60_000, 3000, 2);
  // Port 1 on loopback: nothing listens, the uplink keeps retrying while the outbox fills up.
  const agent = await startAgent(`${dir}/agent`, 'flood', 1, [source], {
    outbox: { maxBytes: cap },
    uplink: { backoff: { initialMs: 1000, maxMs: 1000 } },
  });
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, agent.outbox.footprint().total)), 2);
  await waitFor(() => source.done, 60_000, 'the flood to end');
  await agent.flush();
  clearInterval(sampler);
  peak = Math.max(peak, agent.outbox.footprint().total);
  t.ok(peak <= cap + FILE_CAP_MARGIN_BYTES, `peak ${peak} bytes ≤ ${cap} + ${FILE_CAP_MARGIN_BYTES}`);
  const metrics = await agent.registry.metrics();
  const dropped = Number(/edgetwin_outbox_dropped_total\{lane="1",reason="full"[^}]*\} (\d+)/.exec(metrics)?.[1] ?? 0);
  t.ok(dropped > 0, `drops are visible in /metrics (${dropped})`);
  t.equal(dropped + agent.outbox.depth().rows, 60_000, 'every reading is queued or counted as dropped');
  const newest = agent.outbox.read(LANE_NORMAL, 0, 1_000_000).map((r) => (JSON.parse(r.body) as { seq: number }).seq);
  t.equal(newest[newest.length - 1], 60_000, 'the newest reading is kept');
  t.same(
    newest,
    Array.from({ length: newest.length }, (_, i) => 60_000 - newest.length + 1 + i),
    'what is kept is the newest, contiguous',
  );
  await agent.stop(100);
});
