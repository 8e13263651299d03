/**
 * The per-device rate limiter (common/token-bucket.ts), on an injected clock.
 */
import t from 'tap';
import { TokenBuckets } from '../../common/token-bucket.js';

t.test('token buckets: burst, sustained rate, delay accounting', async (t) => {
  let now = 0;
  const b = new TokenBuckets(10, 3, () => now);
  t.same([b.tryTake('x'), b.tryTake('x'), b.tryTake('x'), b.tryTake('x')], [true, true, true, false], 'burst of 3, then refused');
  t.ok(b.tryTake('y'), 'buckets are per device');
  now += 100;
  t.ok(b.tryTake('x'), 'one token back after 1/rate s');
  t.notOk(b.tryTake('x'));
  now += 10_000;
  t.same(
    [b.takeOrWait('x'), b.takeOrWait('x'), b.takeOrWait('x'), b.takeOrWait('x'), b.takeOrWait('x')],
    [0, 0, 0, 100, 200],
    'delay mode: later ones wait their turn',
  );
  t.equal(new TokenBuckets(0, 1).takeOrWait('x'), 0, 'rate 0 = no limit');
});
