/**
 * WAL fsync coalescing (collector/spool/wal-sync.ts): what makes a group commit durable before its PUBACKs
 * when the spool runs with synchronous=NORMAL.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { WalSync } from '../../collector/spool/wal-sync.js';
import { tempDir } from '../helpers/stack.js';

t.test('WAL fsync: callbacks after the sync, coalesced, and a replaced file is reopened', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const wal = join(dir, 'x.db-wal');
  writeFileSync(wal, 'frames');
  const s = new WalSync(wal);
  const order: string[] = [];
  await Promise.all(['a', 'b', 'c'].map((n) => new Promise<void>((resolve) => s.after((err) => (order.push(err ? 'err' : n), resolve())))));
  t.same(order, ['a', 'b', 'c'], 'every waiter answered, in order, without error');
  renameSync(wal, `${wal}.old`);
  writeFileSync(wal, 'new frames');
  await new Promise<void>((resolve, reject) => s.after((err) => (err ? reject(err) : resolve())));
  t.pass('a replaced WAL file is reopened');
  s.close();
  const missing = new WalSync(join(dir, 'none-wal'));
  await new Promise<void>((resolve) => missing.after((err) => (t.ok(err, 'a missing WAL file is an error for the waiters'), resolve())));
});
