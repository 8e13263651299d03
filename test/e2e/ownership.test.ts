/**
 * Device ownership end to end (board decision D1): two sites' collectors, each with its own
 * collector token, and a device id registered at both. The first site's data claims the id; the
 * second site's device with that id gets its messages acknowledged by its collector, refused by the
 * cloud (EDGETWIN_ERR_DEVICE_CLAIMED) and dead-lettered at that collector with the reason — while
 * everything else of that site still arrives and its spool drains (nothing blocks behind it).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { topics } from '../../common/wire/record.js';
import { batch, connectOnce, publishQos1 } from '../helpers/collector.js';
import { call, startTestCloud } from '../helpers/cloud.js';
import { startCollector, tempDir, waitFor } from '../helpers/stack.js';

t.test('a device id claimed by one site: the other site dead-letters its messages, loses nothing else', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'));
  t.teardown(() => cloud.stop());
  const admin = (await cloud.tokens.create({ role: 'admin', createdBy: 'test' })).token;
  const tokenOf = async (site: string): Promise<string> =>
    (await cloud.tokens.create({ role: 'collector', site, createdBy: 'test' })).token;
  const collector = async (site: string): Promise<Awaited<ReturnType<typeof startCollector>>> => {
    const c = await startCollector(join(dir, site), cloud.url, 0, {
      siteId: site,
      sinks: { http: { url: cloud.url, token: await tokenOf(site) } },
      twin: { enabled: false },
      models: { enabled: false },
      siteStatus: { enabled: false },
    });
    t.teardown(() => c.stop());
    return c;
  };
  const a = await collector('site-a');
  const b = await collector('site-b');
  const publish = async (port: number, device: string, seqs: number[]): Promise<void> => {
    const { client } = await connectOnce(`mqtt://127.0.0.1:${port}`, { clientId: device });
    for (const seq of seqs) await publishQos1(client, topics.telemetry(device), batch(device, 1, seq, 2));
    await client.endAsync();
  };
  const twin = async (device: string): Promise<{ site: string; readings: number } | undefined> => {
    const r = await call('GET', `${cloud.url}/v1/twins/${device}`, { token: admin });
    return r.status === 200 ? r.body : undefined;
  };

  await publish(a.mqttPort, 'shared-7', [1, 3, 5]);
  await waitFor(async () => (await twin('shared-7'))?.readings === 6, 10_000, 'site-a claims shared-7');
  // Site B: a device with the same id (same identities, epoch 1 seq 1.. — the old cloud called them
  // duplicates and the collector deleted them), and one of its own.
  await publish(b.mqttPort, 'shared-7', [1, 3]);
  await publish(b.mqttPort, 'b-own', [1, 3]);
  await waitFor(async () => (await twin('b-own'))?.readings === 4, 10_000, "site-b's own device arrives");
  const deadLetters = join(dir, 'site-b', 'dead-letter', 'http.jsonl');
  await waitFor(() => existsSync(deadLetters) && readFileSync(deadLetters, 'utf8').trim().split('\n').length === 2, 10_000, 'dead letters');
  const lines = readFileSync(deadLetters, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { device: string; code: string; payload: string });
  t.same(
    lines.map((l) => [l.device, l.code]),
    [
      ['shared-7', 'EDGETWIN_ERR_DEVICE_CLAIMED'],
      ['shared-7', 'EDGETWIN_ERR_DEVICE_CLAIMED'],
    ],
    'both of its messages dead-lettered at site-b with the reason',
  );
  t.ok(
    lines.every((l) => l.payload.includes('"device":"shared-7"')),
    'with their payloads: nothing is lost, an operator can replay them',
  );
  await waitFor(() => b.spool.depth().rows === 0, 10_000, "site-b's spool drains");
  t.match(await twin('shared-7'), { site: 'site-a', readings: 6 }, 'shared-7 still belongs to site-a, with its own readings only');
  t.notOk(existsSync(join(dir, 'site-a', 'dead-letter', 'http.jsonl')), 'site-a dead-lettered nothing');
});
