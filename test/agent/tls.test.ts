/**
 * The uplink over TLS to a real broker (aedes behind node:tls) with certificates made by openssl
 * at test time: the collector's CA, a client certificate (mutual TLS), username/password from a
 * mode-600 file, and IoT Hub-style SAS tokens signed with the device key and renewed before they
 * expire — with nothing lost across the renewal's reconnect.
 */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { verifySasToken } from '../../common/sas-token.js';
import { makePki } from '../helpers/certs.js';
import { CountingSource, TestBroker, startAgent, tempDir, waitFor } from '../helpers/stack.js';

const KEY = Buffer.from('device-key-for-tls-test-0123456789').toString('base64');

t.test('TLS uplink: CA, client certificate, password, SAS token', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  mkdirSync(join(dir, 'pki'));
  mkdirSync(join(dir, 'other'));
  const pki = makePki(join(dir, 'pki'));
  const stranger = makePki(join(dir, 'other'), 'other');
  const client = pki.client('tls-1');
  const server = { key: readFileSync(pki.keyFile), cert: readFileSync(pki.certFile) };

  await t.test('mutual TLS: the broker sees the device certificate', async (t) => {
    const broker = new TestBroker({ tls: { ...server, ca: pki.ca, requestCert: true }, authenticate: (c) => c.certCn === c.clientId });
    await broker.start();
    const agent = await startAgent(join(dir, 'a1'), 'tls-1', broker.port, [new CountingSource(300, 30)], {
      twin: { enabled: false },
      uplink: { url: broker.url, caFile: pki.caFile, certFile: client.certFile, keyFile: client.keyFile },
    });
    await waitFor(() => broker.readings('tls-1').length === 300, 10_000, 'readings over mutual TLS');
    t.equal(broker.connects[0]?.certCn, 'tls-1', 'client certificate presented and verified against the CA');
    await agent.stop(200);
    await broker.stop();
  });

  await t.test('a server certificate from another CA is refused: nothing sent, nothing lost', async (t) => {
    const broker = new TestBroker({ tls: { ...server } });
    await broker.start();
    const agent = await startAgent(join(dir, 'a2'), 'tls-2', broker.port, [new CountingSource(50, 50)], {
      twin: { enabled: false },
      uplink: { url: broker.url, caFile: stranger.caFile, backoff: { initialMs: 50, maxMs: 100 } },
    });
    await waitFor(
      async () => /edgetwin_uplink_errors_total\{code="[^"]+"[^}]*\} [1-9]/.test(await agent.registry.metrics()),
      5000,
      'TLS errors counted',
    );
    await agent.flush();
    t.equal(broker.connects.length, 0, 'never got as far as CONNECT');
    t.equal(agent.outbox.depth().rows, 50, 'the readings wait in the outbox');
    await agent.stop(100);
    await broker.stop();
  });

  await t.test('username and password from a mode-600 file', async (t) => {
    const pw = join(dir, 'password');
    writeFileSync(pw, 's3cret-pass\n');
    chmodSync(pw, 0o600);
    const broker = new TestBroker({ tls: server, authenticate: (c) => c.username === 'tls-3' && c.password === 's3cret-pass' });
    await broker.start();
    const agent = await startAgent(join(dir, 'a3'), 'tls-3', broker.port, [new CountingSource(100, 50)], {
      twin: { enabled: false },
      uplink: { url: broker.url, caFile: pki.caFile, passwordFile: pw },
    });
    await waitFor(() => broker.readings('tls-3').length === 100, 10_000, 'readings with a password');
    await agent.stop(200);
    const wrong = join(dir, 'wrong');
    writeFileSync(wrong, 'guess\n');
    chmodSync(wrong, 0o600);
    const refused = await startAgent(join(dir, 'a3b'), 'tls-3', broker.port, [new CountingSource(10, 10)], {
      twin: { enabled: false },
      uplink: { url: broker.url, caFile: pki.caFile, passwordFile: wrong, backoff: { initialMs: 50, maxMs: 100 } },
    });
    await waitFor(() => broker.connects.filter((c) => c.password === 'guess').length >= 2, 5000, 'refused CONNECTs, retried');
    await refused.flush();
    t.equal(broker.readings('tls-3').length, 100, 'a wrong password delivers nothing');
    t.equal(refused.outbox.depth().rows, 10, 'and loses nothing');
    await refused.stop(100);
    await broker.stop();
  });

  await t.test('SAS tokens: verified by the broker, renewed before expiry without loss', async (t) => {
    const keyFile = join(dir, 'device.key');
    writeFileSync(keyFile, `${KEY}\n`);
    chmodSync(keyFile, 0o600);
    const broker = new TestBroker({
      tls: server,
      authenticate: (c) => {
        try {
          const tok = verifySasToken(c.password ?? '', c.clientId, KEY);
          return tok.sr === 'edgetwin.local/devices/tls-4';
        } catch {
          return false;
        }
      },
    });
    await broker.start();
    // One reading every 10 ms for the whole test: the renewal happens in the middle of the stream.
    const source = new CountingSource(100_000, 1, 10);
    const agent = await startAgent(join(dir, 'a4'), 'tls-4', broker.port, [source], {
      twin: { enabled: false },
      uplink: {
        url: broker.url,
        caFile: pki.caFile,
        sasKeyFile: keyFile,
        sasHostName: 'edgetwin.local',
        sasTokenTtlS: 5,
        backoff: { initialMs: 50, maxMs: 100 },
      },
    });
    await waitFor(() => broker.connects.length >= 2 && agent.uplink.connected, 10_000, 'a reconnect with a renewed token');
    source.stop();
    await agent.flush();
    const produced = agent.identity.nextSeq - 1;
    await waitFor(() => agent.outbox.depth().rows === 0, 10_000, 'outbox drained');
    const [first, second] = broker.connects;
    t.not(first!.password, second!.password, 'a new token for the new connection');
    t.match(second!.password, /^SharedAccessSignature sr=edgetwin\.local%2Fdevices%2Ftls-4&sig=.+&se=\d+$/);
    const seqs = new Set(broker.readings('tls-4').map((r) => r.seq));
    t.equal(seqs.size, produced, `all ${produced} readings arrived across the renewal`);
    await agent.stop(200);
    await broker.stop();
  });
});
