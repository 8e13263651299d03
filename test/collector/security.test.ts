/**
 * The collector accepts only who belongs, and misbehaviour costs no one else: unknown device, bad
 * token, expired token, wrong password, a client id that is not the device, empty client ids,
 * publishes and subscriptions outside the device's topics, oversize payloads, garbage bytes and
 * over-long packets — each refused or closed and counted, while a well-behaved device publishes
 * throughout and gets every message acknowledged and spooled.
 */
import { connect as netConnect } from 'node:net';
import t from 'tap';
import { ErrorCodes } from '../../common/errors.js';
import { topics } from '../../common/wire/record.js';
import {
  batch,
  closed,
  connectOnce,
  HUB,
  metric,
  publishQos1,
  sasToken,
  spooledBodies,
  startRegistryCollector,
} from '../helpers/collector.js';
import { tempDir, waitFor } from '../helpers/stack.js';

const username = (id: string): string => `${HUB}/${id}/?api-version=2021-04-12`;

/** Sends a bare MQTT 3.1.1 CONNECT and returns the first 4 bytes answered (the CONNACK). */
async function rawConnack(port: number, clientId: string, clean: boolean): Promise<number[]> {
  const id = Buffer.from(clientId);
  const body = Buffer.concat([
    Buffer.from([0, 4]),
    Buffer.from('MQTT'),
    Buffer.from([4, clean ? 0x02 : 0x00, 0, 60, id.length >> 8, id.length & 0xff]),
    id,
  ]);
  const sock = netConnect(port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  sock.write(Buffer.concat([Buffer.from([0x10, body.length]), body]));
  const got: number[] = [];
  await new Promise<void>((resolve) => {
    sock.on('data', (d: Buffer) => got.push(...d));
    sock.once('close', () => resolve());
  });
  return got.slice(0, 4);
}

t.test('refusals are counted and never disturb a connected device', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const c = await startRegistryCollector(dir, { mqtt: { maxPayloadBytes: 4096 } });
  const url = `mqtt://127.0.0.1:${c.mqttPort}`;
  const reg = c.devices!;
  const good = await reg.add('good-1', 'sas');
  const other = await reg.add('other-1', 'sas');
  const pw = await reg.add('pw-1', 'password');
  const stranger = await reg.add('stranger', 'sas');
  reg.revoke('stranger');

  // The bystander: publishes all along, each one must be acknowledged.
  const { client: bystander } = await connectOnce(url, {
    clientId: 'good-1',
    username: username('good-1'),
    password: sasToken('good-1', good.key!),
  });
  let acked = 0;
  let stop = false;
  const pump = (async () => {
    for (let seq = 1; !stop; seq++) {
      await publishQos1(bystander, topics.telemetry('good-1'), batch('good-1', 1, seq));
      acked++;
      // About time: paces the bystander's steady stream (a rate, not a wait).
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  const refusedWith = async (what: string, opts: Parameters<typeof connectOnce>[1], code: number, reason: string): Promise<void> => {
    const before = await metric(c.registry, 'edgetwin_broker_auth_failures_total', { reason });
    const r = await connectOnce(url, opts);
    t.equal(r.refusedCode, code, `${what}: CONNACK ${code}`);
    t.equal(await metric(c.registry, 'edgetwin_broker_auth_failures_total', { reason }), before + 1, `${what}: counted as ${reason}`);
  };

  await refusedWith(
    'unknown device',
    { clientId: 'nobody', username: username('nobody'), password: sasToken('nobody', good.key!) },
    5,
    'unknown_device',
  );
  await refusedWith(
    'revoked device',
    { clientId: 'stranger', username: username('stranger'), password: sasToken('stranger', stranger.key!) },
    5,
    'revoked',
  );
  await refusedWith(
    'token signed with another key',
    { clientId: 'good-1', username: username('good-1'), password: sasToken('good-1', other.key!) },
    5,
    'bad_token',
  );
  await refusedWith(
    'token for another device',
    { clientId: 'good-1', username: username('good-1'), password: sasToken('other-1', good.key!) },
    5,
    'bad_token',
  );
  await refusedWith(
    'expired token',
    { clientId: 'other-1', username: username('other-1'), password: sasToken('other-1', other.key!, -5) },
    5,
    'expired',
  );
  await refusedWith('no password', { clientId: 'other-1', username: username('other-1') }, 5, 'no_credential');
  await refusedWith('wrong password', { clientId: 'pw-1', username: 'pw-1', password: 'not-it' }, 5, 'bad_password');
  // The same answer for an id that does not exist: CONNACK never tells a prober which ids are registered.
  await refusedWith(
    'unknown device with a password',
    { clientId: 'nobody-2', username: 'nobody-2', password: 'not-it' },
    5,
    'unknown_device',
  );
  await refusedWith(
    'client id is not the device of the username',
    { clientId: 'other-1', username: username('good-1'), password: sasToken('good-1', good.key!) },
    2,
    'client_id',
  );
  // mqtt.js will not send an empty client id with a persistent session, so these CONNECTs are hand-made.
  for (const clean of [false, true]) {
    const before = await metric(c.registry, 'edgetwin_broker_auth_failures_total', { reason: 'client_id' });
    t.same(await rawConnack(c.mqttPort, '', clean), [0x20, 0x02, 0x00, 0x02], `empty client id, clean=${clean}: CONNACK 2 (MQTT-3.1.3-8)`);
    t.equal(await metric(c.registry, 'edgetwin_broker_auth_failures_total', { reason: 'client_id' }), before + 1, 'counted');
  }
  await refusedWith('a client id with MQTT wildcards', { clientId: 'a+b#', username: 'a+b#', password: 'y' }, 2, 'client_id');

  // A client may pipeline publishes right behind its CONNECT (MQTT allows it): all are answered.
  {
    const id = Buffer.from('other-1');
    const user = Buffer.from(username('other-1'));
    const pass = Buffer.from(sasToken('other-1', other.key!));
    const body = Buffer.concat([
      Buffer.from([0, 4]),
      Buffer.from('MQTT'),
      Buffer.from([4, 0xc2, 0, 60]),
      Buffer.from([0, id.length]),
      id,
      Buffer.from([user.length >> 8, user.length & 0xff]),
      user,
      Buffer.from([pass.length >> 8, pass.length & 0xff]),
      pass,
    ]);
    const topic = Buffer.from(topics.telemetry('other-1'));
    const publishes = Array.from({ length: 100 }, (_, i) => {
      const payload = Buffer.from(batch('other-1', 3, 5001 + i));
      const len = 2 + topic.length + 2 + payload.length;
      return Buffer.concat([
        Buffer.from([0x32, (len & 0x7f) | 0x80, len >> 7, topic.length >> 8, topic.length & 0xff]),
        topic,
        Buffer.from([0, i + 1]),
        payload,
      ]);
    });
    const sock = netConnect(c.mqttPort, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    let acks = 0;
    sock.on('data', (d: Buffer) => {
      for (let i = 0; i + 3 < d.length; i += 4) if (d[i] === 0x40) acks++;
    });
    sock.write(Buffer.concat([Buffer.from([0x10, (body.length & 0x7f) | 0x80, body.length >> 7]), body, ...publishes]));
    await waitFor(() => acks === 100, 5000, 'PUBACKs for pipelined publishes');
    t.pass('100 publishes sent before the CONNACK are all acknowledged');
    sock.destroy();
  }

  const pwOk = await connectOnce(url, { clientId: 'pw-1', username: 'pw-1', password: pw.password! });
  t.notOk(pwOk.refusedCode, 'the right password connects');
  pwOk.client.end(true);

  // Publishing outside the device's topics: closed, unacknowledged, counted, not stored.
  {
    const { client } = await connectOnce(url, {
      clientId: 'other-1',
      username: username('other-1'),
      password: sasToken('other-1', other.key!),
    });
    const before = await metric(c.registry, 'edgetwin_broker_rejected_total', { code: ErrorCodes.FORBIDDEN });
    let pubacked = false;
    client.publish(topics.telemetry('good-1'), batch('good-1', 9, 9), { qos: 1 }, (err) => (pubacked = !err));
    t.ok(await closed(client), 'publish to another device topic: connection closed');
    t.notOk(pubacked, '… and not acknowledged');
    t.equal(await metric(c.registry, 'edgetwin_broker_rejected_total', { code: ErrorCodes.FORBIDDEN }), before + 1, '… and counted');
    client.end(true);
  }
  {
    const { client } = await connectOnce(url, {
      clientId: 'other-1',
      username: username('other-1'),
      password: sasToken('other-1', other.key!),
    });
    let pubacked = false;
    client.publish('$SYS/anything', 'x', { qos: 1 }, (err) => (pubacked = !err));
    t.ok(await closed(client), 'publish to a broker topic: connection closed');
    t.notOk(pubacked);
    client.end(true);
  }
  // Subscribing outside: SUBACK 0x80 for that filter, the connection stays.
  {
    const { client } = await connectOnce(url, {
      clientId: 'other-1',
      username: username('other-1'),
      password: sasToken('other-1', other.key!),
    });
    // mqtt.js turns a SUBACK holding any 0x80 into an error that carries the packet.
    const suback = await client
      .subscribeAsync({ 'devices/good-1/#': { qos: 1 }, 'devices/other-1/messages/devicebound/#': { qos: 1 }, '#': { qos: 0 } })
      .then(
        () => undefined,
        (err: { packet?: { granted: number[] } }) => err.packet,
      );
    t.same(suback?.granted, [128, 1, 128], 'foreign and wildcard filters refused, own tree granted');
    await publishQos1(client, topics.telemetry('other-1'), batch('other-1', 1, 1));
    t.pass('the connection still works after a refused subscription');
    client.end(true);
  }
  // Oversize payload (over mqtt.maxPayloadBytes): acknowledged so the device stops resending, dropped, counted.
  {
    const { client } = await connectOnce(url, {
      clientId: 'other-1',
      username: username('other-1'),
      password: sasToken('other-1', other.key!),
    });
    const before = await metric(c.registry, 'edgetwin_broker_rejected_total', { code: ErrorCodes.PAYLOAD_TOO_LARGE });
    await publishQos1(client, topics.telemetry('other-1'), batch('other-1', 1, 100, 80));
    t.equal(
      await metric(c.registry, 'edgetwin_broker_rejected_total', { code: ErrorCodes.PAYLOAD_TOO_LARGE }),
      before + 1,
      'oversize payload counted',
    );
    t.notOk(
      spooledBodies(c).some((b) => b.includes('"seq":100,')),
      'oversize payload not stored',
    );
    // A packet far beyond any payload limit is cut off at its length header.
    const errBefore = await metric(c.registry, 'edgetwin_broker_connection_errors_total');
    client.publish(topics.telemetry('other-1'), Buffer.alloc(200 * 1024, 0x20), { qos: 1 });
    t.ok(await closed(client), 'over-long packet: connection closed');
    t.ok((await metric(c.registry, 'edgetwin_broker_connection_errors_total')) > errBefore, 'over-long packet counted');
    client.end(true);
  }
  // Garbage bytes instead of MQTT.
  {
    const before = await metric(c.registry, 'edgetwin_broker_connection_errors_total', { phase: 'connecting' });
    const sock = netConnect(c.mqttPort, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    sock.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n\xff\xfe\x00garbage'));
    await new Promise((r) => sock.once('close', r));
    t.pass('garbage bytes: socket closed by the collector');
    await waitFor(
      async () => (await metric(c.registry, 'edgetwin_broker_connection_errors_total', { phase: 'connecting' })) === before + 1,
      2000,
      'garbage counted',
    );
  }
  // Bad JSON from an authenticated device: acknowledged, counted, not stored.
  {
    const { client } = await connectOnce(url, {
      clientId: 'other-1',
      username: username('other-1'),
      password: sasToken('other-1', other.key!),
    });
    const before = await metric(c.registry, 'edgetwin_broker_rejected_total', { code: ErrorCodes.BAD_PAYLOAD });
    await publishQos1(client, topics.telemetry('other-1'), Buffer.from([0xff, 0x00, 0x13]));
    await publishQos1(client, topics.telemetry('other-1'), batch('good-1', 1, 1));
    t.equal(
      await metric(c.registry, 'edgetwin_broker_rejected_total', { code: ErrorCodes.BAD_PAYLOAD }),
      before + 2,
      'non-JSON and a batch naming another device are counted',
    );
    client.end(true);
  }

  stop = true;
  await pump;
  t.ok(acked > 10, `the bystander kept publishing (${acked} acknowledged)`);
  t.ok(bystander.connected, 'the bystander was never disconnected');
  const mine = spooledBodies(c).filter((b) => b.includes('"device":"good-1"'));
  t.equal(mine.length, acked, 'every acknowledged bystander message is in the spool');
  bystander.end(true);
  await c.stop();
});

t.test('revocation and token expiry disconnect a connected device', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const c = await startRegistryCollector(dir);
  const url = `mqtt://127.0.0.1:${c.mqttPort}`;
  const dev = await c.devices!.add('rev-1', 'sas');
  const keep = await c.devices!.add('keep-1', 'sas');
  const { client } = await connectOnce(url, { clientId: 'rev-1', username: username('rev-1'), password: sasToken('rev-1', dev.key!) });
  const { client: keeper } = await connectOnce(url, {
    clientId: 'keep-1',
    username: username('keep-1'),
    password: sasToken('keep-1', keep.key!),
  });
  await publishQos1(client, topics.telemetry('rev-1'), batch('rev-1', 1, 1));
  c.devices!.revoke('rev-1');
  t.ok(await closed(client, 3000), 'revoked device dropped while connected');
  t.equal(await metric(c.registry, 'edgetwin_broker_disconnects_total', { reason: 'revoked' }), 1);
  const again = await connectOnce(url, { clientId: 'rev-1', username: username('rev-1'), password: sasToken('rev-1', dev.key!) });
  t.equal(again.refusedCode, 5, 'and cannot come back');
  t.ok(keeper.connected, 'other devices stay connected');

  const { client: shortLived } = await connectOnce(url, {
    clientId: 'keep-1',
    clean: true,
    username: username('keep-1'),
    password: sasToken('keep-1', keep.key!, 1),
  });
  t.ok(await closed(shortLived, 4000), 'a device is dropped when its SAS token expires');
  t.equal(await metric(c.registry, 'edgetwin_broker_disconnects_total', { reason: 'token_expired' }), 1);
  keeper.end(true);
  await c.stop();
});

t.test('max connections and per-device rate limits', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const c = await startRegistryCollector(dir, {
    auth: { mode: 'open' },
    mqtt: { maxConnections: 2, rateLimit: { messagesPerS: 20, burst: 5, onExceed: 'disconnect' } },
  });
  const url = `mqtt://127.0.0.1:${c.mqttPort}`;
  const a = await connectOnce(url, { clientId: 'lim-a' });
  const b = await connectOnce(url, { clientId: 'lim-b' });
  const third = await connectOnce(url, { clientId: 'lim-c' });
  t.equal(third.refusedCode, 3, 'a connection over mqtt.maxConnections gets CONNACK 3');
  t.equal(await metric(c.registry, 'edgetwin_broker_auth_failures_total', { reason: 'max_connections' }), 1);
  const retake = await connectOnce(url, { clientId: 'lim-a' });
  t.notOk(retake.refusedCode, 'a connected device may reconnect (takeover) at the limit');

  // disconnect mode: the burst passes, then the connection is dropped unacknowledged.
  const acks: boolean[] = [];
  for (let i = 1; i <= 30; i++) b.client.publish(topics.telemetry('lim-b'), batch('lim-b', 1, i), { qos: 1 }, (err) => acks.push(!err));
  t.ok(await closed(b.client), 'over the rate: disconnected');
  t.ok((await metric(c.registry, 'edgetwin_broker_rate_limited_total', { action: 'disconnect' })) >= 1, 'counted');
  await waitFor(() => spooledBodies(c).length >= 5, 2000, 'the burst committed');
  const stored = spooledBodies(c).filter((x) => x.includes('"lim-b"')).length;
  t.ok(stored >= 5 && stored < 30, `the burst was stored (${stored}), the rest refused`);
  // Stored ones whose PUBACK was cut off by the disconnect are resent later: a duplicate, never a loss.
  t.ok(acks.filter(Boolean).length <= stored, 'nothing acknowledged that is not stored');
  retake.client.end(true);
  a.client.end(true);
  await c.stop();

  // delay mode: nothing is refused, PUBACKs come late.
  const d = await startRegistryCollector(`${dir}/delay`, {
    auth: { mode: 'open' },
    mqtt: { rateLimit: { messagesPerS: 200, burst: 5, onExceed: 'delay' } },
  });
  const slow = await connectOnce(`mqtt://127.0.0.1:${d.mqttPort}`, { clientId: 'lim-d' });
  await Promise.all(Array.from({ length: 40 }, (_, i) => publishQos1(slow.client, topics.telemetry('lim-d'), batch('lim-d', 1, i + 1))));
  t.ok(slow.client.connected, 'delay mode keeps the device connected');
  t.equal(spooledBodies(d).length, 40, 'and stores every message');
  t.ok((await metric(d.registry, 'edgetwin_broker_rate_limited_total', { action: 'delay' })) >= 30, 'the delayed ones are counted');
  slow.client.end(true);
  await d.stop();
});

t.test('at mqtt.maxConnections a refusal answers CONNACK 3 alike: whether an id is connected stays hidden', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const c = await startRegistryCollector(dir, { mqtt: { maxConnections: 2 } });
  t.teardown(() => c.stop());
  const url = `mqtt://127.0.0.1:${c.mqttPort}`;
  const pw = new Map<string, string>();
  for (const id of ['full-a', 'full-b', 'full-c']) pw.set(id, (await c.devices!.add(id, 'password')).password!);
  const as = (id: string, password = pw.get(id)) => connectOnce(url, { clientId: id, username: id, password, reconnectPeriod: 0 });
  const a = await as('full-a');
  const b = await as('full-b');
  t.notOk(a.refusedCode ?? b.refusedCode, 'two devices fill the collector');
  const notConnected = await as('full-c', 'wrong');
  const connected = await as('full-a', 'wrong');
  t.same([notConnected.refusedCode, connected.refusedCode], [3, 3], 'a wrong password: 3 for a connected id as for another');
  const retake = await as('full-a');
  t.notOk(retake.refusedCode, 'the right credential still takes its own connection over at the limit');
  for (const x of [b, retake]) await x.client.endAsync();
});
