/**
 * The outbox's page-cache bound (`cacheKiB`) holds from the moment the file is opened: the
 * open-time quick_check reads every page, and under better-sqlite3's 16 MiB default those pages
 * stayed in the agent's RSS for good (the backlog-drain phase of bench/agent.ts went over 100 MB).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { LANE_NORMAL, SqliteOutbox, type OutboxConfig } from '../../common/outbox/outbox.js';
import { openDatabase } from '../../common/sqlite.js';
import { silent, tempDir } from '../helpers/stack.js';

const cfg = (dir: string, over: Partial<OutboxConfig> = {}): OutboxConfig => ({
  path: join(dir, 'o.db'),
  maxBytes: 256 << 20,
  whenFull: 'drop_oldest',
  synchronous: 'normal',
  cacheKiB: 2048,
  ...over,
});

/** Anonymous resident memory of this process (heap, malloc), KiB. */
function rssAnonKiB(): number {
  return Number(/RssAnon:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN);
}

t.test('openDatabase applies cacheKiB; the outbox passes its own', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const { db } = openDatabase({
    path: join(dir, 'x.db'),
    synchronous: 'normal',
    schema: 'CREATE TABLE IF NOT EXISTS x (a)',
    cacheKiB: 512,
  });
  t.equal(db.pragma('cache_size', { simple: true }), -512);
  db.close();
  const o = new SqliteOutbox(cfg(dir), { log: silent() });
  t.equal(o.db.pragma('cache_size', { simple: true }), -2048);
  o.close();
});

t.test(
  'opening a large outbox does not fill a page cache beyond cacheKiB',
  { skip: !existsSync('/proc/self/status') && 'needs /proc' },
  async (t) => {
    const { dir, cleanup } = tempDir();
    t.teardown(cleanup);
    // ~40 MB of rows: far more than the 16 MiB default cache, so a check run before the bound would fill it.
    const writer = new SqliteOutbox(cfg(dir), { log: silent() });
    const body = JSON.stringify({ pad: 'x'.repeat(380) });
    for (let i = 0; i < 100; i++) writer.append(Array.from({ length: 1000 }, () => ({ body })));
    t.equal(writer.depth().rows, 100_000);
    writer.close();

    const before = rssAnonKiB();
    const o = new SqliteOutbox(cfg(dir), { log: silent() });
    const grownKiB = rssAnonKiB() - before;
    t.equal(o.depth().rows, 100_000, 'the backlog is all there');
    // Measured: 0–2 MiB with the bound, 10–16 MiB when the check ran under the default cache.
    t.ok(grownKiB < 6 * 1024, `opening grew anonymous RSS by ${Math.round(grownKiB / 1024)} MiB (cache bound 2 MiB)`);
    t.equal(o.read(LANE_NORMAL, 0, 1).length, 1);
    o.close();
  },
);
