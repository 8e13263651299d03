import { writeFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ErrorCodes } from '../../common/errors.js';
import { LANE_NORMAL, LANE_PRIORITY } from '../../common/outbox/outbox.js';
import { createRegistry } from '../../common/metrics.js';
import { openOutbox } from '../helpers/outbox.js';
import { tempDir } from '../helpers/stack.js';

t.test('rows come back in order and leave only when acknowledged', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const o = openOutbox(dir);
  o.append([{ body: '"a"' }, { body: '"b"' }, { body: '"c"' }]);
  const rows = o.read(LANE_NORMAL, 0, 2);
  t.same(
    rows.map((r) => r.body),
    ['"a"', '"b"'],
  );
  t.equal(o.ack(LANE_NORMAL, rows[0]!.id, rows[1]!.id), 2);
  t.same(
    o.read(LANE_NORMAL, 0, 10).map((r) => r.body),
    ['"c"'],
  );
  t.same(o.depth(), { rows: 1, bytes: 3 });
  t.equal(o.oldestId(), rows[1]!.id + 1, 'the oldest row still waiting (what the flush method waits past)');
  o.append([{ body: '"d"' }]);
  t.equal(o.oldestId(), rows[1]!.id + 1, 'newer rows do not move it');
  o.ack(LANE_NORMAL, 0, o.lastId());
  t.equal(o.oldestId(), undefined, 'empty: nothing waits');
  o.close();
});

t.test('ids are never reused after the queue empties (cursor readers depend on it)', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const o = openOutbox(dir);
  o.append([{ body: '1' }, { body: '2' }]);
  const first = o.read(LANE_NORMAL, 0, 10);
  o.ack(LANE_NORMAL, 0, first[1]!.id);
  o.append([{ body: '3' }]);
  const next = o.read(LANE_NORMAL, first[1]!.id, 10);
  t.same(
    next.map((r) => r.body),
    ['3'],
    'a reader whose cursor passed the old rows sees the new one',
  );
  t.ok(next[0]!.id > first[1]!.id);
  o.close();
});

t.test('rows and meta survive a reopen', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  let o = openOutbox(dir);
  o.transaction(() => {
    o.appendInTx([{ body: '"x"', grp: 4 }]);
    o.meta.set('seq', 41);
  });
  o.close();
  o = openOutbox(dir);
  t.equal(o.meta.get('seq'), 41);
  const rows = o.read(LANE_NORMAL, 0, 10);
  t.equal(rows.length, 1);
  t.equal(rows[0]!.grp, 4);
  t.same(o.depth(), { rows: 1, bytes: 3 });
  o.close();
});

t.test('a read never mixes groups and respects maxBytes, but always returns one row', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const o = openOutbox(dir);
  o.append([
    { body: 'aaaa', grp: 1 },
    { body: 'bbbb', grp: 1 },
    { body: 'cccc', grp: 2 },
  ]);
  t.same(
    o.read(LANE_NORMAL, 0, 10).map((r) => r.body),
    ['aaaa', 'bbbb'],
  );
  t.same(
    o.read(LANE_NORMAL, 0, 10, 5).map((r) => r.body),
    ['aaaa'],
  );
  t.same(
    o.read(LANE_NORMAL, 0, 10, 1).map((r) => r.body),
    ['aaaa'],
  );
  o.close();
});

t.test('priority lane is separate and survives drops that take telemetry first', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const reg = createRegistry('test');
  const o = openOutbox(dir, { maxBytes: 4096 }, reg);
  const body = 'x'.repeat(1000);
  o.append([{ body, lane: LANE_PRIORITY }]);
  o.append([{ body: `${body}1` }, { body: `${body}2` }, { body: `${body}3` }]);
  o.append([{ body: `${body}4` }]);
  t.ok(o.depth().bytes <= 4096, 'stays under maxBytes');
  t.equal(o.read(LANE_PRIORITY, 0, 10).length, 1, 'the alert is kept');
  t.same(
    o.read(LANE_NORMAL, 0, 10).map((r) => r.body.slice(1000)),
    ['2', '3', '4'],
    'the oldest telemetry went',
  );
  const metrics = await reg.metrics();
  t.match(metrics, /edgetwin_outbox_dropped_total\{lane="1",reason="full"[^}]*\} 1/);
  o.close();
});

t.test('whenFull=block refuses the write whole with EDGETWIN_ERR_STORE_FULL', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const o = openOutbox(dir, { maxBytes: 4096, whenFull: 'block' });
  o.append([{ body: 'x'.repeat(3000) }]);
  t.throws(() => o.append([{ body: 'y'.repeat(500) }, { body: 'z'.repeat(1000) }]), { code: ErrorCodes.STORE_FULL });
  t.equal(o.depth().rows, 1, 'nothing of the refused write was stored');
  o.close();
});

t.test('a corrupt file is moved aside and a fresh outbox starts', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  writeFileSync(join(dir, 'o.db'), Buffer.alloc(8192, 0x5a));
  const o = openOutbox(dir);
  t.ok(o.quarantinedTo, 'reports where the bad file went');
  t.ok(
    readdirSync(dir).some((f) => f.startsWith('o.db.corrupt-')),
    'the bad file is kept for inspection',
  );
  o.append([{ body: '1' }]);
  t.equal(o.depth().rows, 1, 'the fresh outbox works');
  o.close();
});

t.test('the boot epoch and seq survive a quarantined outbox, so identities are never reused', async (t) => {
  const { bootIdentity } = await import('../../agent/outbox/identity.js');
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  let o = openOutbox(dir);
  t.same(bootIdentity(o), { epoch: 1, nextSeq: 1 });
  o.meta.set('seq', 500);
  o.close();
  o = openOutbox(dir);
  t.same(bootIdentity(o), { epoch: 2, nextSeq: 501 });
  o.close();
  writeFileSync(join(dir, 'o.db'), Buffer.alloc(8192, 0x5a));
  o = openOutbox(dir);
  t.ok(o.quarantinedTo, 'the outbox was replaced');
  const id = bootIdentity(o);
  t.equal(id.epoch, 3, 'the epoch continues from identity.json');
  t.ok(id.nextSeq > 500, 'and so does the seq');
  o.close();
  writeFileSync(join(dir, 'identity.json'), '{not json');
  o = openOutbox(dir);
  t.equal(bootIdentity(o).epoch, 4, 'a damaged identity file falls back to the outbox');
  o.close();
});
