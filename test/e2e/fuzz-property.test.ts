/**
 * The quick version of the property-based poison fuzz (`npm run fuzz -- --suite property` runs it
 * at length): mutated inputs at every boundary are refused with a code, stored or quarantined; the
 * lake writer ends with nothing pending and every good reading in silver (bench/fuzz/property.ts).
 */
import t from 'tap';
import { propertySuite } from '../../bench/fuzz/property.js';
import { tempDir } from '../helpers/util.js';

t.test('poison at every boundary: refused with a code, stored or quarantined; nothing good lost, nothing pending', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const f = await propertySuite(dir, 13_001, 1);
  t.same(f.failures, [], 'every property held');
  t.equal(f.good_in_silver, f.good_sent, `every good reading in silver (${f.good_sent})`);
  t.equal(f.lake_pending_batches, 0, 'nothing pending in the lake writer');
  t.equal(f.lake_error, null, 'no writer error');
  t.ok(f.quarantined_refused > 0, `refused payloads kept in the cloud quarantine (${f.quarantined_refused})`);
  t.same(
    Object.keys(f.http_answers).filter((s) => Number(s) >= 500),
    [],
    `no 5xx (${JSON.stringify(f.http_answers)})`,
  );
});
