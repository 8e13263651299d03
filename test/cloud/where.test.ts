/** The WHERE builder of the cloud's list queries: conditions and their parameters stay in step, and unset filters add nothing. */
import t from 'tap';
import { Where } from '../../cloud/store/where.js';

t.test('no condition: no WHERE', async (t) => {
  const w = new Where().given('site = ?', undefined);
  t.equal(w.clause, '');
  t.same(w.params, []);
});

t.test('given filters in order, with their values; unset ones skipped', async (t) => {
  const w = new Where('device = ?', 'd-1').given('site = ?', undefined).given('ts >= ?', 0).add('(ts, seq) > (?, ?)', 5, 7).add('1 = 0');
  t.equal(w.sql, 'device = ? AND ts >= ? AND (ts, seq) > (?, ?) AND 1 = 0');
  t.equal(w.clause, 'WHERE device = ? AND ts >= ? AND (ts, seq) > (?, ?) AND 1 = 0');
  t.same(w.params, ['d-1', 0, 5, 7], 'a falsy value that was given (0) is a filter');
});
