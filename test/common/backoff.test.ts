/**
 * Reconnect and retry pacing: exponential growth up to the cap, full jitter (devices that lost the
 * same link come back spread out, not in lockstep), reset after a success, and an abortable sleep.
 */
import t from 'tap';
import { Backoff, sleep } from '../../common/backoff.js';
import { mulberry32 } from '../../common/random.js';

t.test('the bound doubles per attempt up to maxMs; reset starts over', async (t) => {
  const hi = new Backoff({ initialMs: 100, maxMs: 1000 }, () => 1);
  t.same(
    Array.from({ length: 7 }, () => hi.next()),
    [100, 200, 400, 800, 1000, 1000, 1000],
    'upper bound: doubling, capped',
  );
  hi.reset();
  t.equal(hi.next(), 100, 'after reset the first wait is short again');
  const lo = new Backoff({ initialMs: 100, maxMs: 1000 }, () => 0);
  t.same(
    Array.from({ length: 5 }, () => lo.next()),
    [50, 50, 50, 50, 50],
    'lower bound: half the initial wait, never 0',
  );
  const huge = new Backoff({ initialMs: 1, maxMs: 60_000 }, () => 1);
  for (let i = 0; i < 100; i++) huge.next();
  t.equal(huge.next(), 60_000, 'many attempts neither overflow nor pass the cap');
});

t.test('full jitter spreads a crowd of clients across the window', async (t) => {
  const rand = mulberry32(42);
  // 1000 devices on their 5th attempt: bound 1600 ms.
  const waits = Array.from({ length: 1000 }, () => {
    const b = new Backoff({ initialMs: 100, maxMs: 30_000 }, rand);
    for (let i = 0; i < 4; i++) b.next();
    return b.next();
  });
  t.ok(
    waits.every((w) => w >= 50 && w <= 1600),
    'all within [initialMs/2, bound]',
  );
  const buckets = new Array(10).fill(0) as number[];
  for (const w of waits) buckets[Math.min(9, Math.floor(((w - 50) / 1550) * 10))]!++;
  t.ok(
    buckets.every((n) => n > 50),
    `no lockstep: every tenth of the window is used (${buckets.join(',')})`,
  );
});

t.test('sleep ends early when aborted, and at once when already aborted', async (t) => {
  const ac = new AbortController();
  const started = Date.now();
  // About time: sleep() itself is under test; the abort ends it, the 60 s are never waited.
  const p = sleep(60_000, ac.signal);
  setTimeout(() => ac.abort(), 10);
  await p;
  t.ok(Date.now() - started < 30_000, 'an abort ends a long sleep');
  await sleep(60_000, ac.signal); // About time: already aborted, so it returns at once
  t.pass('an already-aborted signal returns at once');
});
