/**
 * The collector's small parts on their own: the IoT Hub SDK message mapping, collector-assigned
 * identity (and its rollback with a refused spool write), the rate limiter (with an injected
 * clock), WAL fsync coalescing, usernames, password hashes.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { deviceFromUsername } from '../collector/auth.js';
import { DeviceSequencer } from '../collector/device-seq.js';
import { NO_UNIT, parseDeviceMessage } from '../collector/iothub-telemetry.js';
import { TokenBuckets } from '../collector/rate-limit.js';
import { hashPassword, verifyPassword } from '../collector/registry/device-registry.js';
import { SpoolWriter } from '../collector/spool-writer.js';
import { WalSync } from '../collector/wal-sync.js';
import { ErrorCodes } from '../common/errors.js';
import { SqliteOutbox } from '../common/outbox.js';
import { batch } from './helpers/collector.js';
import { silent, tempDir } from './helpers/stack.js';

const noBag = (): URLSearchParams => new URLSearchParams();

t.test('SDK message bodies map to readings or are refused', async (t) => {
  const now = 1_800_000_000_000;
  const m = parseDeviceMessage('d1', Buffer.from('{"temperature":21.5,"pressure":{"value":101.3,"unit":"kPa"},"status":"ok","bad metric":1,"n":{"value":"x"}}'), noBag, now);
  t.same(m, {
    kind: 'metrics',
    readings: [
      { ts: now, metric: 'temperature', value: 21.5, unit: NO_UNIT },
      { ts: now, metric: 'pressure', value: 101.3, unit: 'kPa' },
    ],
    skipped: 3,
  });
  t.equal((parseDeviceMessage('d1', Buffer.from('{"ts":"2026-01-01T00:00:00Z","x":1}'), noBag, now) as { readings: { ts: number }[] }).readings[0]!.ts, Date.parse('2026-01-01T00:00:00Z'), 'body ts (ISO) wins');
  t.equal(
    (parseDeviceMessage('d1', Buffer.from('{"x":1}'), () => new URLSearchParams('$.ct=application%2Fjson&$.ctime=2026-02-02T00%3A00%3A00.000Z'), now) as { readings: { ts: number }[] }).readings[0]!.ts,
    Date.parse('2026-02-02T00:00:00Z'),
    "IoT Hub's $.ctime property is the sample time when the body has none",
  );
  t.same(parseDeviceMessage('d1', Buffer.from(batch('d1', 3, 7, 2)), noBag, now), { kind: 'batch', readings: 2 }, 'an edgetwin batch passes as is');
  for (const [body, why] of [
    ['not json', /not valid JSON/],
    ['[1,2]', /JSON object/],
    ['{"status":"ok"}', /no numeric metric/],
    [batch('other', 1, 1), /names device other/],
    ['{"v":1,"device":"d1","epoch":1,"readings":[]}', /readings/],
  ] as const) {
    t.throws(() => parseDeviceMessage('d1', Buffer.from(body), noBag, now), { code: ErrorCodes.BAD_PAYLOAD, message: why });
  }
});

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
    new Promise((resolve, reject) => writer.write({ body: '', key: device }, (err) => (err ? reject(err) : resolve()), () => seq.assign(device, Array(n).fill(r))));
  await put('a', 2);
  await put('b', 1);
  await put('a', 1);
  const bodies = (): { device: string; epoch: number; readings: { seq: number }[] }[] =>
    (spool.db.prepare('SELECT body FROM queue ORDER BY id').all() as { body: string }[]).map((x) => JSON.parse(x.body));
  t.same(bodies().map((b) => [b.device, b.epoch, b.readings.map((x) => x.seq)]), [['a', 1_800_000_123, [1, 2]], ['b', 1_800_000_123, [1]], ['a', 1_800_000_123, [3]]]);

  // A group that does not fit is refused whole: its seqs are not consumed, and it goes in once there is room.
  spool.append([{ body: JSON.stringify({ filler: 'x'.repeat(50_000) }), key: 'filler' }]);
  const big = put('a', 600);
  await new Promise((res) => setTimeout(res, 50));
  t.equal(bodies().length, 4, 'the full spool holds the write back');
  spool.ack(1, 0, 1_000_000);
  await big;
  t.same(bodies().map((b) => b.readings[0]!.seq), [4], 'after room was made, the held write gets the next seq (4), none skipped');
  writer.close();
  spool.close();

  spool = new SqliteOutbox({ path, maxBytes: 1 << 20, whenFull: 'block', synchronous: 'full' });
  const again = new DeviceSequencer(spool, () => 1_900_000_000_000);
  t.equal(again.epoch, 1_800_000_123, 'a reopened spool keeps its epoch');
  spool.transaction(() => spool.appendInTx([{ body: again.assign('a', [r]), key: 'a' }]));
  t.equal((JSON.parse((spool.db.prepare('SELECT body FROM queue ORDER BY id DESC LIMIT 1').get() as { body: string }).body) as { readings: { seq: number }[] }).readings[0]!.seq, 604, 'and continues the seq');
  spool.close();
});

t.test('token buckets: burst, sustained rate, delay accounting', async (t) => {
  let now = 0;
  const b = new TokenBuckets(10, 3, () => now);
  t.same([b.tryTake('x'), b.tryTake('x'), b.tryTake('x'), b.tryTake('x')], [true, true, true, false], 'burst of 3, then refused');
  t.ok(b.tryTake('y'), 'buckets are per device');
  now += 100;
  t.ok(b.tryTake('x'), 'one token back after 1/rate s');
  t.notOk(b.tryTake('x'));
  now += 10_000;
  t.same([b.takeOrWait('x'), b.takeOrWait('x'), b.takeOrWait('x'), b.takeOrWait('x'), b.takeOrWait('x')], [0, 0, 0, 100, 200], 'delay mode: later ones wait their turn');
  t.equal(new TokenBuckets(0, 1).takeOrWait('x'), 0, 'rate 0 = no limit');
});

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

t.test('usernames and password hashes', async (t) => {
  t.equal(deviceFromUsername('myhub.azure-devices.net/pump-7/?api-version=2021-04-12&DeviceClientType=x'), 'pump-7');
  t.equal(deviceFromUsername('pump-7'), 'pump-7');
  t.equal(deviceFromUsername(undefined), undefined);
  t.equal(deviceFromUsername('host//'), undefined);
  const h = await hashPassword('correct horse');
  t.match(h, /^scrypt\$16384\$8\$1\$/);
  t.ok(await verifyPassword('correct horse', h));
  t.notOk(await verifyPassword('wrong horse', h));
  t.notOk(await verifyPassword('x', 'md5$abc'), 'unknown hash formats never verify');
});
