/**
 * Listeners: MQTT over TCP, TLS and WebSocket (plain and TLS), each optional; a TLS-only
 * collector refuses plain MQTT; client certificates as device identity; and the start-up rule
 * that an open (registry-less) collector listens on loopback only.
 */
import { connect as netConnect } from 'node:net';
import t, { type Test } from 'tap';
import type { Collector } from '../../collector/collector.js';
import { loadCollectorConfig } from '../../collector/config.js';
import { ErrorCodes } from '../../common/errors.js';
import { topics } from '../../common/wire/record.js';
import { makePki, type TestPki } from '../helpers/certs.js';
import { batch, connectOnce, HUB, metric, publishQos1, sasToken, spooledBodies, startRegistryCollector } from '../helpers/collector.js';
import { tempDir } from '../helpers/stack.js';

/**
 * A registry collector whose MQTT listens on TLS only, with a fresh test CA in a temporary dir that
 * goes when the test ends; `mqtt` adds listeners.
 */
async function startTlsOnly(
  t: Test,
  clientCerts: 'request' | 'require',
  mqtt: object = {},
): Promise<{ dir: string; pki: TestPki; c: Collector }> {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const pki = makePki(dir);
  const c = await startRegistryCollector(`${dir}/c`, {
    mqtt: {
      enabled: false,
      tls: { enabled: true, port: 0, certFile: pki.certFile, keyFile: pki.keyFile, caFile: pki.caFile, clientCerts },
      ...mqtt,
    },
  });
  return { dir, pki, c };
}

t.test('TLS-only collector: mqtts and wss work, plain MQTT meets a TLS handshake', async (t) => {
  const { pki, c } = await startTlsOnly(t, 'request', { ws: { enabled: true, port: 0, tls: true, path: '/$iothub/websocket' } });
  t.equal(c.ports.mqtt, undefined, 'no plain listener');
  t.ok(c.ports.mqtts && c.ports.ws, 'TLS and WSS listeners up');
  const dev = await c.devices!.add('tls-1', 'sas');
  const cert = await c.devices!.add('cert-1', 'x509');
  t.notOk(cert.key, 'an x509 device has no key');
  const auth = { clientId: 'tls-1', username: `${HUB}/tls-1/?api-version=2021-04-12`, password: sasToken('tls-1', dev.key!) };

  const tls = await connectOnce(`mqtts://127.0.0.1:${c.ports.mqtts}`, { ...auth, ca: pki.ca });
  t.notOk(tls.refusedCode, 'mqtts with the CA connects');
  await publishQos1(tls.client, topics.telemetry('tls-1'), batch('tls-1', 1, 1));
  tls.client.end(true);

  const wss = await connectOnce(`wss://127.0.0.1:${c.ports.ws}/$iothub/websocket`, { ...auth, ca: pki.ca });
  t.notOk(wss.refusedCode, 'MQTT over secure WebSocket connects');
  await publishQos1(wss.client, topics.telemetry('tls-1'), batch('tls-1', 1, 2));
  wss.client.end(true);

  // A client certificate with CN = device id is the credential of an x509 device.
  const cc = pki.client('cert-1');
  const x509 = await connectOnce(`mqtts://127.0.0.1:${c.ports.mqtts}`, { clientId: 'cert-1', ca: pki.ca, cert: cc.cert, key: cc.key });
  t.notOk(x509.refusedCode, 'x509 device connects with its certificate, no password');
  await publishQos1(x509.client, topics.telemetry('cert-1'), batch('cert-1', 1, 1));
  x509.client.end(true);
  const noCert = await connectOnce(`mqtts://127.0.0.1:${c.ports.mqtts}`, { clientId: 'cert-1', ca: pki.ca });
  t.equal(noCert.refusedCode, 5, 'x509 device without its certificate is refused (CONNACK 5, like every credential refusal)');
  const wrongCn = pki.client('someone-else');
  const bad = await connectOnce(`mqtts://127.0.0.1:${c.ports.mqtts}`, {
    clientId: 'cert-1',
    ca: pki.ca,
    cert: wrongCn.cert,
    key: wrongCn.key,
  });
  t.equal(bad.refusedCode, 5, 'a certificate for another CN is refused');

  // Plain MQTT against the TLS port: the CONNECT is not a ClientHello, so the socket just closes.
  const plain = await connectOnce(`mqtt://127.0.0.1:${c.ports.mqtts}`, { ...auth, connectTimeout: 2000 }).catch((err: Error) => ({
    refusedCode: -2,
    err,
  }));
  t.ok(plain.refusedCode !== undefined, 'plain MQTT on the TLS port never connects');
  const raw = netConnect(c.ports.mqtts!, '127.0.0.1');
  await new Promise((r) => raw.once('connect', r));
  raw.write(Buffer.from([0x10, 0x0c, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 60, 0, 0]));
  const answer = await new Promise<Buffer>((resolve) => {
    const chunks: Buffer[] = [];
    raw.on('data', (d: Buffer) => chunks.push(d));
    raw.once('close', () => resolve(Buffer.concat(chunks)));
  });
  t.not(answer[0], 0x20, 'no CONNACK is ever sent in the clear');
  t.ok((await metric(c.registry, 'edgetwin_broker_connection_errors_total', { phase: 'tls' })) >= 2, 'failed handshakes are counted');
  // An untrusting client (no CA) does not get through either.
  const untrusted = await connectOnce(`mqtts://127.0.0.1:${c.ports.mqtts}`, auth).catch((err: Error) => ({ refusedCode: -3, err }));
  t.equal(untrusted.refusedCode, -3, 'a client that does not trust the certificate fails the handshake');

  t.equal(spooledBodies(c).length, 3, 'the three good publishes were spooled');
  await c.stop();
});

t.test('clientCerts: require stops certificate-less clients before MQTT', async (t) => {
  const { dir, pki, c } = await startTlsOnly(t, 'require');
  const dev = await c.devices!.add('req-1', 'sas');
  const opts = { clientId: 'req-1', username: 'req-1', password: sasToken('req-1', dev.key!), ca: pki.ca };
  const without = await connectOnce(`mqtts://127.0.0.1:${c.ports.mqtts}`, opts).catch(() => ({ refusedCode: -3 }));
  t.ok(without.refusedCode !== undefined, 'no client certificate: no connection');
  const other = makePki(`${dir}`, 'rogue').client('req-1');
  const rogue = await connectOnce(`mqtts://127.0.0.1:${c.ports.mqtts}`, { ...opts, cert: other.cert, key: other.key }).catch(() => ({
    refusedCode: -3,
  }));
  t.ok(rogue.refusedCode !== undefined, 'a certificate from another CA: no connection');
  const cc = pki.client('req-1');
  const ok = await connectOnce(`mqtts://127.0.0.1:${c.ports.mqtts}`, { ...opts, cert: cc.cert, key: cc.key });
  t.notOk(ok.refusedCode, 'certificate plus SAS token connects');
  ok.client.end(true);
  await c.stop();
});

t.test('plain TCP and WebSocket listeners side by side', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const c = await startRegistryCollector(dir, { auth: { mode: 'open' }, mqtt: { ws: { enabled: true, port: 0 } } });
  t.ok(c.ports.mqtt && c.ports.ws);
  const tcp = await connectOnce(`mqtt://127.0.0.1:${c.ports.mqtt}`, { clientId: 'p-1' });
  const ws = await connectOnce(`ws://127.0.0.1:${c.ports.ws}/mqtt`, { clientId: 'p-2' });
  await publishQos1(tcp.client, topics.telemetry('p-1'), batch('p-1', 1, 1));
  await publishQos1(ws.client, topics.telemetry('p-2'), batch('p-2', 1, 1));
  t.equal(spooledBodies(c).length, 2);
  tcp.client.end(true);
  ws.client.end(true);
  await c.stop();
});

t.test('start-up checks name the key', async (t) => {
  t.throws(() => loadCollectorConfig(undefined, { mqtt: { host: '0.0.0.0' } }, {}), {
    code: ErrorCodes.CONFIG,
    message: /key "auth\.mode" is "open".*mqtt\.host/,
  });
  t.throws(() => loadCollectorConfig(undefined, { mqtt: { ws: { enabled: true, host: '10.1.2.3' } } }, {}), {
    message: /auth\.mode.*mqtt\.ws\.host/,
  });
  t.ok(loadCollectorConfig(undefined, { mqtt: { host: '0.0.0.0' }, auth: { mode: 'registry' } }, {}), 'registry mode may listen anywhere');
  t.throws(() => loadCollectorConfig(undefined, { mqtt: { enabled: false } }, {}), { message: /"mqtt\.enabled"/ });
  t.throws(() => loadCollectorConfig(undefined, { mqtt: { tls: { enabled: true } } }, {}), { message: /"mqtt\.tls\.certFile"/ });
  t.throws(
    () => loadCollectorConfig(undefined, { mqtt: { tls: { enabled: true, certFile: 'a', keyFile: 'b', clientCerts: 'require' } } }, {}),
    { message: /"mqtt\.tls\.caFile"/ },
  );
  t.throws(() => loadCollectorConfig(undefined, { sinks: { eventHubs: { enabled: true } } }, {}), {
    message: /"sinks\.eventHubs\.connectionString"/,
  });
  t.throws(
    () =>
      loadCollectorConfig(undefined, { sinks: { eventHubs: { enabled: true, fullyQualifiedNamespace: 'x.servicebus.windows.net' } } }, {}),
    { message: /"sinks\.eventHubs\.eventHubName"/ },
  );
  t.throws(() => loadCollectorConfig(undefined, { auth: { mode: 'sometimes' } }, {}), { message: /"auth\.mode"/ });
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  await t.rejects(
    startRegistryCollector(dir, {
      mqtt: { tls: { enabled: true, port: 0, certFile: `${dir}/missing.pem`, keyFile: `${dir}/missing.key` } },
    }),
    { code: ErrorCodes.CONFIG, message: /"mqtt\.tls\.certFile": cannot read/ },
    'an unreadable certificate fails start-up naming the key',
  );
});
