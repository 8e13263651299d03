/**
 * Roles and site scope through real HTTP: tokens are required once any exists, viewers cannot
 * write, collectors may only ingest (and read the desired feed of) their own site, site-scoped
 * readers see only their site, revocation takes effect, tokens are stored hashed, every write is
 * audited with who made it. Also `edgetwin cloud tokens create|list|revoke` (compiled CLI).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { call, envelope, readings, startTestCloud, telemetry, tokenCloud } from '../helpers/cloud.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/util.js';

t.test('roles and site scope', async (t) => {
  const { dir, cloud, url, mk } = await tokenCloud(t);
  const admin = await mk('admin', undefined, 'alice');
  const operator = await mk('operator', undefined, 'olga');
  const viewer = await mk('viewer');
  const viewerA = await mk('viewer', 'site-a');
  const operatorA = await mk('operator', 'site-a', 'oscar');
  const collectorA = await mk('collector', 'site-a');

  const post = (token: string | undefined, site: string, id: string): ReturnType<typeof call> =>
    call('POST', `${url}/v1/ingest`, {
      body: envelope(id, site, [telemetry(site === 'site-a' ? 'a-1' : 'b-1', 1, readings(3))]),
      ...(token ? { token } : {}),
    });

  await t.test('ingest: collector token only for its site', async (t) => {
    const none = await post(undefined, 'site-a', 'x0');
    t.same([none.status, none.body.code], [401, 'EDGETWIN_ERR_UNAUTHORIZED']);
    const forged = await post('etk_not-a-real-token-at-all', 'site-a', 'x1');
    t.same([forged.status, forged.body.code], [401, 'EDGETWIN_ERR_UNAUTHORIZED']);
    t.equal((await post(collectorA, 'site-a', 'a-batch')).status, 200);
    const other = await post(collectorA, 'site-b', 'b-batch');
    t.same([other.status, other.body.code], [403, 'EDGETWIN_ERR_FORBIDDEN'], 'a batch for another site');
    const viewerIngest = await post(viewer, 'site-a', 'v-batch');
    t.same([viewerIngest.status, viewerIngest.body.code], [403, 'EDGETWIN_ERR_FORBIDDEN']);
    t.equal((await post(admin, 'site-b', 'b-batch')).status, 200, 'admin may ingest for any site');
    t.equal(
      (await call('GET', `${url}/v1/twins/b-1`, { token: admin })).body.readings,
      3,
      'the refused batch was not stored; the admin one was',
    );
    t.equal((await call('GET', `${url}/v1/twins/a-1`, { token: admin })).body.readings, 3);
  });

  await t.test('reads: anonymous refused, collectors cannot read twins, scope limits what is seen', async (t) => {
    t.equal((await call('GET', `${url}/v1/twins`)).status, 401);
    t.equal((await call('GET', `${url}/v1/twins`, { token: collectorA })).status, 403);
    const all = await call('GET', `${url}/v1/twins`, { token: viewer });
    t.same(
      all.body.items.map((i: { deviceId: string }) => i.deviceId),
      ['a-1', 'b-1'],
    );
    const scoped = await call('GET', `${url}/v1/twins`, { token: viewerA });
    t.same(
      scoped.body.items.map((i: { deviceId: string }) => i.deviceId),
      ['a-1'],
      'a site-scoped list shows its site only',
    );
    const cross = await call('GET', `${url}/v1/twins?site=site-b`, { token: viewerA });
    t.same([cross.status, cross.body.code], [403, 'EDGETWIN_ERR_FORBIDDEN']);
    // Another site's device looks like one that does not exist: no oracle, no other site's name.
    const otherTwin = await call('GET', `${url}/v1/twins/b-1`, { token: viewerA });
    t.same([otherTwin.status, otherTwin.body.code], [404, 'EDGETWIN_ERR_NOT_FOUND']);
    t.notMatch(JSON.stringify(otherTwin.body), /site-b/, 'the refusal does not name the owner');
    t.equal((await call('GET', `${url}/v1/twins/b-1/telemetry`, { token: viewerA })).status, 404);
    t.equal((await call('GET', `${url}/v1/twins/b-1/audit`, { token: viewerA })).status, 404);
    t.same(
      (await call('GET', `${url}/v1/sites`, { token: viewerA })).body.items.map((s: { site: string }) => s.site),
      ['site-a'],
    );
    t.equal((await call('GET', `${url}/v1/anomalies?site=site-b`, { token: viewerA })).status, 403);
    t.equal(
      (await call('GET', `${url}/v1/desired?site=site-a`, { token: collectorA })).status,
      200,
      'the collector reads its desired feed',
    );
    t.equal((await call('GET', `${url}/v1/desired?site=site-b`, { token: collectorA })).status, 403);
    t.equal((await call('GET', `${url}/healthz`)).status, 200, 'health needs no token');
    t.equal((await call('GET', `${url}/openapi.json`)).status, 200, 'nor does the API description');
  });

  await t.test('writes: viewers cannot, operators can within their scope, all audited', async (t) => {
    const patch = (token: string, device: string): ReturnType<typeof call> =>
      call('PATCH', `${url}/v1/twins/${device}/desired`, { token, body: { samplingIntervalMs: 2000 }, headers: { 'if-match': '*' } });
    const v = await patch(viewer, 'a-1');
    t.same([v.status, v.body.code], [403, 'EDGETWIN_ERR_FORBIDDEN'], 'viewer cannot write');
    const c = await patch(collectorA, 'a-1');
    t.equal(c.status, 403, 'a collector cannot write');
    t.equal(
      (await patch(operatorA, 'b-1')).status,
      404,
      'operator scoped to site-a cannot change site-b (its devices are not there for it)',
    );
    t.equal((await patch(operatorA, 'a-1')).status, 200);
    t.equal((await patch(operator, 'b-1')).status, 200);
    const tags = await call('PATCH', `${url}/v1/twins/b-1`, { token: viewer, body: { tags: { x: '1' } }, headers: { 'if-match': '*' } });
    t.equal(tags.status, 403);
    const audit = await call('GET', `${url}/v1/audit`, { token: admin });
    const items = audit.body.items as { actor: string; action: string; device: string }[];
    t.same(
      items.filter((e) => e.action !== 'auth.failed').map((e) => [e.actor, e.action, e.device]),
      [
        ['olga', 'twin.desired.patch', 'b-1'],
        ['oscar', 'twin.desired.patch', 'a-1'],
      ],
    );
    // The refused requests of the tests above (no token, a forged one) are in the trail too.
    t.ok(
      items.some((e) => e.action === 'auth.failed' && e.actor === 'unauthenticated@127.0.0.1'),
      'sign-in failures are audited',
    );
    const scopedAudit = await call('GET', `${url}/v1/audit`, { token: viewerA });
    t.same(
      scopedAudit.body.items.map((e: { device: string }) => e.device),
      ['a-1'],
      "a scoped reader sees its site's audit only",
    );
  });

  await t.test('revocation takes effect; tokens are stored hashed', async (t) => {
    const { info } = await cloud.tokens.create({ role: 'viewer', createdBy: 'test' });
    const token = (await cloud.tokens.list()).find((x) => x.id === info.id);
    t.ok(token);
    const temp = await mk('viewer');
    t.equal((await call('GET', `${url}/v1/sites`, { token: temp })).status, 200);
    const id = (await cloud.tokens.list()).at(-1)!.id;
    t.ok(await cloud.tokens.revoke(id));
    t.equal((await call('GET', `${url}/v1/sites`, { token: temp })).status, 401, 'revoked');
    const dbBytes =
      readFileSync(join(dir, 'cloud', 'twins.db')).toString('latin1') + readFileSync(join(dir, 'cloud', 'twins.db-wal')).toString('latin1');
    for (const tok of [admin, viewer, collectorA, temp]) t.notOk(dbBytes.includes(tok), 'no plain token in the database');
  });
});

t.test('edgetwin cloud tokens create|list|revoke', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cfg = join(dir, 'cloud.json');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(cfg, JSON.stringify({ stateDir: join(dir, 'state') }));
  const created = runCli([
    'cloud',
    'tokens',
    'create',
    '--role',
    'collector',
    '--site',
    'plant-9',
    '--name',
    'gw-9',
    '--config',
    cfg,
    '--json',
  ]);
  t.equal(created.status, 0, created.stderr);
  const tok = JSON.parse(created.stdout) as { token: string; id: string; role: string; site: string };
  t.match(tok, { role: 'collector', site: 'plant-9', token: /^etk_[A-Za-z0-9_-]{43}$/ });
  const noSite = runCli(['cloud', 'tokens', 'create', '--role', 'collector', '--config', cfg]);
  t.equal(noSite.status, 2, 'a collector token needs a site');
  t.match(noSite.stderr, /--site/);
  // Argument mistakes answer before the config loads: a usage error, even with a config that is not there,
  // and nothing created on the way.
  const missing = join(dir, 'nowhere', 'cloud.json');
  for (const args of [
    ['create', '--role', 'root'],
    ['create', '--role', 'viewer', 'extra'],
    ['create', '--role', 'viewer', '--expires-in', 'soon'],
    ['revoke'],
    ['frobnicate'],
  ]) {
    const r = runCli(['cloud', 'tokens', ...args, '--config', missing]);
    t.equal(r.status, 2, `tokens ${args.join(' ')}: usage error`);
    t.match(r.stderr, /EDGETWIN_ERR_USAGE/, 'with the stable code');
  }
  t.notOk(existsSync(join(dir, 'nowhere')), 'no state created by a refused command');
  const list = runCli(['cloud', 'tokens', 'list', '--config', cfg]);
  t.match(list.stdout, new RegExp(`${tok.id}\\s+collector\\s+plant-9\\s+active\\s+gw-9`));
  t.notOk(list.stdout.includes(tok.token), 'list never shows the token');

  const cloud = await startTestCloud(join(dir, 'state'));
  t.teardown(() => cloud.stop());
  const ok = await call('POST', `${cloud.url}/v1/ingest`, {
    token: tok.token,
    body: envelope('c-1', 'plant-9', [telemetry('d-9', 1, readings(2))]),
  });
  t.equal(ok.status, 200, 'the created token works');
  const revoked = runCli(['cloud', 'tokens', 'revoke', tok.id, '--config', cfg]);
  t.equal(revoked.status, 0, revoked.stderr);
  // About time: a revocation by another process (the CLI, same SQLite file) reaches this cloud within its 1 s token cache.
  await new Promise((r) => setTimeout(r, 1100));
  const refused = await call('POST', `${cloud.url}/v1/ingest`, {
    token: tok.token,
    body: envelope('c-2', 'plant-9', [telemetry('d-9', 1, readings(2))]),
  });
  t.equal(refused.status, 401, 'refused once revoked');
  t.equal(runCli(['cloud', 'tokens', 'revoke', tok.id, '--config', cfg]).status, 1, 'revoking twice is an error');
  const audit = await call('GET', `${cloud.url}/v1/audit?action=token.revoke`, {
    token: (await cloud.tokens.create({ role: 'admin', createdBy: 'test' })).token,
  });
  t.match(audit.body.items[0], { action: 'token.revoke', actor: /^cli:/, detail: { id: tok.id } });
});

t.test('anonymousRole viewer (the demo): reads open, writes and ingest need a token', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'), { auth: { anonymousRole: 'viewer' } });
  t.teardown(() => cloud.stop());
  const admin = (await cloud.tokens.create({ role: 'admin', createdBy: 'test' })).token;
  t.equal(
    (await call('POST', `${cloud.url}/v1/ingest`, { token: admin, body: envelope('a-1', 's', [telemetry('d', 1, readings(2))]) })).status,
    200,
  );
  t.equal((await call('GET', `${cloud.url}/v1/twins/d`)).status, 200, 'anonymous read');
  const write = await call('PATCH', `${cloud.url}/v1/twins/d/desired`, { body: { a: 1 }, headers: { 'if-match': '*' } });
  t.same([write.status, write.body.code], [401, 'EDGETWIN_ERR_UNAUTHORIZED'], 'anonymous write asks for a token');
  t.equal((await call('POST', `${cloud.url}/v1/ingest`, { body: envelope('a-2', 's', [telemetry('d', 1, readings(2))]) })).status, 401);
});
