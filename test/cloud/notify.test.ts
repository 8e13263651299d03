/**
 * Alert notification delivery against real receivers on loopback: a signed JSON webhook, Slack
 * and Teams incoming-webhook formats over HTTP, and email through a real SMTP server with STARTTLS
 * and authentication. Retries with backoff, the dead letter, a destination that hangs while
 * another keeps receiving, the per-destination rate limit (injected clock), and secrets that stay
 * out of errors and logs.
 */
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { resolveDestination, type DestinationConfig, type ResolvedDestination } from '../../cloud/alerts/notify/destinations.js';
import { verifyWebhook } from '../../cloud/alerts/notify/formats.js';
import { enqueueNotification, Notifier } from '../../cloud/alerts/notify/notifier.js';
import type { Alert, NotificationBody } from '../../cloud/alerts/types.js';
import { SqliteStore } from '../../cloud/store/sqlite-store.js';
import { createLogger } from '../../common/log.js';
import { createRegistry } from '../../common/metrics.js';
import { makePki } from '../helpers/certs.js';
import { startHttpReceiver, startSmtpReceiver } from '../helpers/receivers.js';
import { tempDir, waitFor } from '../helpers/util.js';

const log = createLogger('test', { level: 'silent' });
const SECRET = 'whsec-test-0123456789abcdef';

function alert(over: Partial<Alert> = {}): Alert {
  return {
    id: 'a_1',
    ruleId: 'offline',
    ruleName: 'Device offline',
    kind: 'device_offline',
    severity: 'critical',
    state: 'firing',
    key: 'pump-7',
    site: 'site-a',
    device: 'pump-7',
    summary: 'pump-7 last seen 312 s ago (limit 300 s)',
    value: 312,
    labels: {},
    startedAt: '2026-12-07T01:00:00.000Z',
    firedAt: '2026-12-07T01:00:00.000Z',
    resolvedAt: null,
    lastSeenAt: '2026-12-07T01:00:00.000Z',
    acknowledgedAt: null,
    acknowledgedBy: null,
    ackNote: null,
    silenced: false,
    ...over,
  };
}
const firing = (over: Partial<Alert> = {}): NotificationBody => ({
  event: 'firing',
  alert: alert(over),
  url: 'https://edgetwin.example/#/alerts/a_1',
});

t.test('notification delivery', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const store = await SqliteStore.open({ stateDir: dir });
  t.teardown(() => store.close());
  const secretFile = join(dir, 'hook.secret');
  writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
  const retry = { initialMs: 20, maxMs: 100, maxAttempts: 4, maxAgeMs: 3_600_000 };
  const notifierFor = (ds: DestinationConfig[], now?: () => number): Notifier => {
    const n = new Notifier({
      store,
      destinations: ds.map((d) => resolveDestination(d, { SLACK_URL: '' })),
      retry,
      log,
      registry: createRegistry('test'),
      pollMs: 50,
      ...(now ? { now } : {}),
    });
    t.teardown(() => n.stop());
    return n;
  };
  const queue = async (n: Notifier, body: NotificationBody, ids = n.destinationIds): Promise<void> => {
    await enqueueNotification(store, ids, body, Date.now());
    n.poke();
  };
  const stateOf = async (id: string): Promise<{ state: string; attempts: number; last_error: string | null }[]> =>
    store.all('SELECT state, attempts, last_error FROM alert_notifications WHERE destination = ? ORDER BY id', [id]);

  await t.test('signed JSON webhook, Slack and Teams formats', async (t) => {
    const rx = await startHttpReceiver();
    t.teardown(() => rx.close());
    const n = notifierFor([
      { id: 'hook', kind: 'webhook', webhookUrl: rx.url, secretFile },
      { id: 'slack', kind: 'slack', webhookUrl: `${rx.url}/slack` },
      { id: 'teams', kind: 'teams', webhookUrl: `${rx.url}/teams` },
    ]);
    n.start();
    await queue(n, firing());
    await rx.waitFor(3);
    const hook = rx.received.find((r) => r.path === '/hook')!;
    const nowS = Math.floor(Date.now() / 1000);
    t.ok(verifyWebhook(SECRET, hook.headers as Record<string, string>, hook.body, nowS), 'HMAC signature verifies with the shared secret');
    t.notOk(verifyWebhook('another-secret', hook.headers as Record<string, string>, hook.body, nowS), 'and not with another');
    t.notOk(
      verifyWebhook(SECRET, hook.headers as Record<string, string>, hook.body.replace('pump-7', 'pump-8'), nowS),
      'a changed body fails',
    );
    t.notOk(verifyWebhook(SECRET, hook.headers as Record<string, string>, hook.body, nowS + 3600), 'a replay an hour later fails');
    t.same(JSON.parse(hook.body), firing(), 'the webhook body is the notification as is');
    t.equal(hook.headers['x-edgetwin-event'], 'alert.firing');
    t.match(hook.headers['x-edgetwin-delivery'], /^n\d+$/);
    const slack = JSON.parse(rx.received.find((r) => r.path === '/hook/slack')!.body);
    t.match(slack.text, /\[CRITICAL\] Device offline: pump-7/);
    t.equal(slack.blocks[0].type, 'header');
    t.ok(slack.blocks.some((b: { fields?: { text: string }[] }) => b.fields?.some((f) => f.text === '*Site*\nsite-a')));
    const teams = JSON.parse(rx.received.find((r) => r.path === '/hook/teams')!.body);
    t.equal(teams.type, 'message');
    t.equal(teams.attachments[0].contentType, 'application/vnd.microsoft.card.adaptive');
    t.equal(teams.attachments[0].content.type, 'AdaptiveCard');
    t.ok(teams.attachments[0].content.body.some((b: { type: string }) => b.type === 'FactSet'));
    await waitFor(async () => (await stateOf('teams'))[0]?.state === 'sent', 5000, 'marked sent');
  });

  await t.test('retries with backoff, then delivered; a refusal is dead-lettered at once; a dead end after maxAttempts', async (t) => {
    const rx = await startHttpReceiver();
    t.teardown(() => rx.close());
    rx.script(503, { status: 429, headers: { 'retry-after': '0' } });
    const n = notifierFor([{ id: 'flaky', kind: 'webhook', webhookUrl: rx.url, secretFile }]);
    n.start();
    await queue(n, firing({ id: 'a_2' }));
    await queue(n, { ...firing({ id: 'a_2', state: 'resolved', resolvedAt: '2026-12-07T01:05:00.000Z' }), event: 'resolved' });
    await rx.waitFor(4);
    t.same(
      rx.received.map((r) => JSON.parse(r.body).event),
      ['firing', 'firing', 'firing', 'resolved'],
      'two failures, then firing and only then resolved (order kept)',
    );
    const rows = await stateOf('flaky');
    await waitFor(async () => (await stateOf('flaky')).every((r) => r.state === 'sent'), 5000, 'both sent');
    t.same(rows[0]!.attempts >= 2, true);

    const bad = await startHttpReceiver();
    t.teardown(() => bad.close());
    bad.script(400);
    const n2 = notifierFor([{ id: 'bad', kind: 'slack', webhookUrl: bad.url }]);
    n2.start();
    await queue(n2, firing({ id: 'a_3' }));
    await waitFor(async () => (await stateOf('bad'))[0]?.state === 'dead', 5000, 'dead letter');
    t.same((await stateOf('bad'))[0]!.attempts, 1, 'HTTP 400 is not retried');
    t.match((await stateOf('bad'))[0]!.last_error, /HTTP 400.*refused/);
    const dead = await n2.list({ state: 'dead', limit: 10 });
    t.same([dead.length, dead[0]!.destination, dead[0]!.alertId], [1, 'bad', 'a_3'], 'listed as a dead letter');
    t.ok(await n2.retry(dead[0]!.id), 'a dead letter can be re-queued');
    await bad.waitFor(2);
    await waitFor(async () => (await stateOf('bad'))[0]?.state === 'sent', 5000, 'sent after retry');

    const n3 = notifierFor([{ id: 'gone', kind: 'webhook', webhookUrl: 'http://127.0.0.1:9/hook', secretFile }]);
    n3.start();
    await queue(n3, firing({ id: 'a_4' }));
    await waitFor(async () => (await stateOf('gone'))[0]?.state === 'dead', 10_000, 'dead after maxAttempts');
    t.equal((await stateOf('gone'))[0]!.attempts, retry.maxAttempts);
  });

  await t.test('a destination that hangs never delays another', async (t) => {
    const stuck = await startHttpReceiver();
    const ok = await startHttpReceiver();
    t.teardown(() => Promise.all([stuck.close(), ok.close()]));
    stuck.script('hang', 'hang', 'hang', 'hang');
    const n = notifierFor([
      { id: 'stuck', kind: 'teams', webhookUrl: stuck.url, timeoutMs: 60_000 },
      { id: 'ok', kind: 'slack', webhookUrl: ok.url },
    ]);
    n.start();
    for (let i = 0; i < 5; i++) await queue(n, firing({ id: `h_${i}` }));
    await ok.waitFor(5, 5000);
    t.equal(ok.received.length, 5, 'all five reached the healthy destination while the other hangs');
    t.equal((await stateOf('stuck')).filter((r) => r.state === 'sent').length, 0);
  });

  await t.test('per-destination rate limit (injected clock): the third waits its turn, none is dropped', async (t) => {
    const rx = await startHttpReceiver();
    t.teardown(() => rx.close());
    let now = Date.now();
    const n = notifierFor([{ id: 'limited', kind: 'slack', webhookUrl: rx.url, ratePerMin: 6, burst: 2 }], () => now);
    for (let i = 0; i < 3; i++) await enqueueNotification(store, ['limited'], firing({ id: `r_${i}` }), now);
    t.equal(await n.deliverNext('limited'), 0);
    t.equal(await n.deliverNext('limited'), 0);
    const wait = await n.deliverNext('limited');
    t.equal(wait, 10_000, 'third one: wait 10 s (6 per minute)');
    t.equal(rx.received.length, 2);
    now += wait;
    t.equal(await n.deliverNext('limited'), 0);
    t.equal(rx.received.length, 3, 'sent once its turn came');
  });

  await t.test('email over SMTP with STARTTLS and AUTH', async (t) => {
    const pki = makePki(dir);
    const smtp = await startSmtpReceiver({
      key: readFileSync(pki.keyFile),
      cert: readFileSync(pki.certFile),
      users: { alerts: 'hunter2-smtp' },
    });
    t.teardown(() => smtp.close());
    const pw = join(dir, 'smtp.pw');
    writeFileSync(pw, 'hunter2-smtp\n', { mode: 0o600 });
    const base = {
      kind: 'email' as const,
      to: ['ops@example.com', 'oncall@example.com'],
      from: 'edgetwin@example.com',
      host: '127.0.0.1',
      port: smtp.port,
      caFile: pki.caFile,
    };
    const n = notifierFor([{ id: 'mail', ...base, user: 'alerts', passwordFile: pw }]);
    n.start();
    await queue(n, firing({ id: 'm_1', device: 'pump-<7>', key: 'pump-<7>' }), ['mail']);
    await smtp.waitFor(1);
    const m = smtp.mails[0]!;
    t.same(
      [m.secure, m.user, m.from, m.to],
      [true, 'alerts', 'edgetwin@example.com', ['ops@example.com', 'oncall@example.com']],
      'over STARTTLS, authenticated',
    );
    t.match(m.raw, /Subject: \[CRITICAL\] Device offline: pump-<7>/);
    t.match(m.raw, /Message-ID: <n\d+@edgetwin>/i);
    t.match(m.raw, /pump-&#60;7&#62;/, 'device ids are escaped in the HTML part');
    t.equal(smtp.plaintextAttempts, 0);
    t.throws(
      () => resolveDestination({ id: 'x', ...base, user: 'alerts', passwordEnv: 'SLACK_URL' }, { SLACK_URL: '' }),
      /SLACK_URL is not set/,
    );
    await n.stop();

    const noTls = await startSmtpReceiver({ users: { alerts: 'hunter2-smtp' } });
    t.teardown(() => noTls.close());
    const n2 = notifierFor([{ id: 'mail-plain', ...base, port: noTls.port, user: 'alerts', passwordFile: pw }]);
    n2.start();
    await queue(n2, firing({ id: 'm_2' }));
    await waitFor(async () => (await stateOf('mail-plain'))[0]?.attempts === 1, 5000, 'first attempt');
    t.equal(noTls.mails.length + noTls.plaintextAttempts, 0, 'a server without STARTTLS gets neither the login nor the mail');

    const wrong = join(dir, 'wrong.pw');
    writeFileSync(wrong, 'not-the-password', { mode: 0o600 });
    const smtp2 = await startSmtpReceiver({
      key: readFileSync(pki.keyFile),
      cert: readFileSync(pki.certFile),
      users: { alerts: 'hunter2-smtp' },
    });
    t.teardown(() => smtp2.close());
    const n3 = notifierFor([{ id: 'mail-wrong', ...base, port: smtp2.port, user: 'alerts', passwordFile: wrong }]);
    n3.start();
    await queue(n3, firing({ id: 'm_3' }));
    await waitFor(async () => (await stateOf('mail-wrong'))[0]?.state === 'dead', 5000, 'dead letter');
    t.match((await stateOf('mail-wrong'))[0]!.last_error, /535/, 'refused credentials are not retried');
    t.notMatch((await stateOf('mail-wrong'))[0]!.last_error, /not-the-password/);
  });

  t.test('secrets: files must be private; URLs never appear in errors', async (t) => {
    const loose = join(dir, 'loose.url');
    writeFileSync(loose, 'https://hooks.slack.com/services/T000/B000/XXXXSECRET');
    chmodSync(loose, 0o644);
    t.throws(() => resolveDestination({ id: 's', kind: 'slack', webhookUrlFile: loose }), /must not be readable by group or others/);
    t.throws(() => resolveDestination({ id: 'w', kind: 'webhook', webhookUrl: 'http://127.0.0.1/x' }), /needs secretFile or secretEnv/);
    t.throws(() => resolveDestination({ id: 's', kind: 'slack', webhookUrl: 'http://x', webhookUrlEnv: 'X' }), /exactly one of webhookUrl/);
    const d: ResolvedDestination = resolveDestination(
      { id: 's', kind: 'slack', webhookUrlEnv: 'HOOK' },
      { HOOK: 'http://127.0.0.1:9/services/SECRETPART' },
    );
    t.equal(d.resolvedUrl, 'http://127.0.0.1:9/services/SECRETPART');
  });
});
