/** KeyedWaiters: a waiter gets what is there when it is woken or times out; waking one key leaves the others waiting. */
import t from 'tap';
import { KeyedWaiters } from '../../common/keyed-waiters.js';

t.test('wake(key) resolves that key’s waiters with the current value; others keep waiting', async (t) => {
  const there = new Map<string, string>();
  const w = new KeyedWaiters((k) => there.get(k));
  const a1 = w.wait('a', 60_000);
  const a2 = w.wait('a', 60_000);
  const b = w.wait('b', 60_000);
  there.set('a', 'channel-a');
  w.wake('a');
  t.same(await Promise.all([a1, a2]), ['channel-a', 'channel-a']);
  t.notOk(w.has('a'), 'woken waiters are forgotten');
  t.ok(w.has('b'), 'the other key still waits');
  w.wakeAll();
  t.equal(await b, undefined, 'a wake-all gives what is there: nothing');
  t.notOk(w.has('b'));
});

t.test('a timed-out waiter gets what is there then and is forgotten', async (t) => {
  const w = new KeyedWaiters(() => 'late');
  t.equal(await w.wait('x', 1), 'late');
  t.notOk(w.has('x'));
});
