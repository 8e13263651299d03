/**
 * Two devices sharing one id (collector/broker/takeovers.ts): each connection takes the id over
 * from the other. Both number their readings from the same start, so the cloud would keep one of
 * each identity: the collector cannot refuse either copy, but it counts every takeover and, when
 * they keep coming, logs an error naming the device — once a single reconnect stays quiet.
 */
import { Writable } from 'node:stream';
import t from 'tap';
import { createLogger } from '../../common/log.js';
import { connectOnce, metric, startRegistryCollector } from '../helpers/collector.js';
import { tempDir, waitFor } from '../helpers/stack.js';

t.test('a device id used by two connections in turn: counted, and an error names the device', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const lines: { level: number; msg: string; device?: string; takeovers?: number }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as (typeof lines)[number]);
      cb();
    },
  });
  const c = await startRegistryCollector(dir, { auth: { mode: 'open' } }, { log: createLogger('collector', { level: 'info' }, sink) });
  t.teardown(() => c.stop());
  const url = `mqtt://127.0.0.1:${c.mqttPort}`;
  const takeovers = (): Promise<number> => metric(c.registry, 'edgetwin_broker_session_takeovers_total');
  const errors = (): typeof lines => lines.filter((l) => l.level === 50 && l.device === 'twin-7');

  const first = await connectOnce(url, { clientId: 'twin-7', clean: true, reconnectPeriod: 0 });
  const other = await connectOnce(url, { clientId: 'other-1', clean: true, reconnectPeriod: 0 });
  t.equal(await takeovers(), 0, 'two devices with their own ids: no takeover');
  const second = await connectOnce(url, { clientId: 'twin-7', clean: true, reconnectPeriod: 0 });
  await waitFor(() => first.client.disconnected, 5000, 'the first connection closed by the takeover');
  t.equal(await takeovers(), 1, 'one takeover counted');
  t.same(errors(), [], 'one reconnect is normal: no error');
  // The first device comes back, and the second, and so on: two devices sharing the id.
  const third = await connectOnce(url, { clientId: 'twin-7', clean: true, reconnectPeriod: 0 });
  await waitFor(() => second.client.disconnected, 5000, 'the second connection closed');
  const fourth = await connectOnce(url, { clientId: 'twin-7', clean: true, reconnectPeriod: 0 });
  await waitFor(() => third.client.disconnected, 5000, 'the third connection closed');
  t.equal(await takeovers(), 3);
  t.equal(errors().length, 1, 'the third takeover within a minute is an error');
  t.match(errors()[0], { takeovers: 3, msg: /share this id/ }, 'naming the device and what it means');
  const fifth = await connectOnce(url, { clientId: 'twin-7', clean: true, reconnectPeriod: 0 });
  await waitFor(() => fourth.client.disconnected, 5000, 'the fourth connection closed');
  t.equal(errors().length, 1, 'reported once per window, not at every takeover');
  t.notOk(other.client.disconnected, 'the other device was never disturbed');
  for (const x of [other, fifth]) await x.client.endAsync();
});
