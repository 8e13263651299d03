/**
 * Collector-assigned identity (collector/spool/device-seq.ts) through the spool writer: durable,
 * per device, and rolled back when the spool refuses the write.
 */
import { join } from 'node:path';
import t from 'tap';
import { DeviceSequencer } from '../../collector/spool/device-seq.js';
import { SpoolWriter } from '../../collector/spool/spool-writer.js';
import { SqliteOutbox } from '../../common/outbox/outbox.js';
import { silent, tempDir, waitFor } from '../helpers/stack.js';

t.test('collector-assigned seqs are durable, per device, and roll back with a refused write', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const path = join(dir, 'spool.db');
  let spool = new SqliteOutbox({ path, maxBytes: 65536, whenFull: 'block', synchronous: 'full' });
  const seq = new DeviceSequencer(spool, () => 1_800_000_123_456);
  t.equal(seq.epoch, 1_800_000_123, 'epoch = spool creation time in seconds');
  const r = { ts: 1, metric: 'm', value: 1, unit: 'u' };
  const writer = new SpoolWriter(spool, { commitIntervalMs: 0, commitMaxMessages: 100, retryFullMs: 10 }, silent(), () => undefined);
  const put = (device: string, n: number): Promise<void> =>
    new Promise((resolve, reject) =>
      writer.write(
        { body: '', key: device },
        (err) => (err ? reject(err) : resolve()),
        () => seq.assign(device, Array(n).fill(r)),
      ),
    );
  await put('a', 2);
  await put('b', 1);
  await put('a', 1);
  const bodies = (): { device: string; epoch: number; readings: { seq: number }[] }[] =>
    (spool.db.prepare('SELECT body FROM queue ORDER BY id').all() as { body: string }[]).map((x) => JSON.parse(x.body));
  t.same(
    bodies().map((b) => [b.device, b.epoch, b.readings.map((x) => x.seq)]),
    [
      ['a', 1_800_000_123, [1, 2]],
      ['b', 1_800_000_123, [1]],
      ['a', 1_800_000_123, [3]],
    ],
  );

  // A group that does not fit is refused whole: its seqs are not consumed, and it goes in once there is room.
  spool.append([{ body: JSON.stringify({ filler: 'x'.repeat(50_000) }), key: 'filler' }]);
  const big = put('a', 600);
  await waitFor(() => writer.spoolFullSince !== undefined, 5_000, 'the writer to find the spool full');
  t.equal(bodies().length, 4, 'the full spool holds the write back');
  spool.ack(1, 0, 1_000_000);
  await big;
  t.same(
    bodies().map((b) => b.readings[0]!.seq),
    [4],
    'after room was made, the held write gets the next seq (4), none skipped',
  );
  writer.close();
  spool.close();

  spool = new SqliteOutbox({ path, maxBytes: 1 << 20, whenFull: 'block', synchronous: 'full' });
  const again = new DeviceSequencer(spool, () => 1_900_000_000_000);
  t.equal(again.epoch, 1_800_000_123, 'a reopened spool keeps its epoch');
  spool.transaction(() => spool.appendInTx([{ body: again.assign('a', [r]), key: 'a' }]));
  t.equal(
    (
      JSON.parse((spool.db.prepare('SELECT body FROM queue ORDER BY id DESC LIMIT 1').get() as { body: string }).body) as {
        readings: { seq: number }[];
      }
    ).readings[0]!.seq,
    604,
    'and continues the seq',
  );
  spool.close();
});
