/**
 * Through the cloud's real HTTP API: alerts from ingested data (anomaly, data quality) listed,
 * acknowledged and silenced by an operator (audited), refused to a viewer, hidden across site
 * scopes; rules over the API (config rules read-only); OIDC sign-in against a local issuer with
 * every refusal audited (rate-limited per address); a static token past its expiry refused; 429 +
 * Retry-After per principal, and per-site ingest limits that hold one site back and not another.
 */
import { join } from 'node:path';
import { request } from 'undici';
import t from 'tap';
import { call, envelope, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { startOidcIssuer } from '../helpers/oidc-issuer.js';
import { tempDir } from '../helpers/util.js';

async function del(url: string, token: string): Promise<number> {
  const r = await request(url, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
  await r.body.dump();
  return r.statusCode;
}
async function put(url: string, token: string, body: unknown): Promise<{ status: number; body: { code?: string } }> {
  const r = await request(url, {
    method: 'PUT',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: r.statusCode, body: (await r.body.json()) as { code?: string } };
}

t.test('alerts, sign-in and limits over HTTP', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const idp = await startOidcIssuer();
  t.teardown(() => idp.close());
  const cloud = await startTestCloud(join(dir, 'cloud'), {
    quality: { ranges: { m0: { max: 0 } } },
    auth: {
      oidc: {
        enabled: true,
        issuer: idp.issuer,
        audience: ['api://edgetwin'],
        mapping: [
          { value: 'DataEngineer', role: 'operator' },
          { value: 'DataAnalyst', role: 'viewer' },
        ],
      },
    },
    rateLimit: { perPrincipal: { ratePerS: 1, burst: 40 }, ingestPerSite: { readingsPerS: 1, burstReadings: 60 } },
    alerts: {
      evaluateIntervalMs: 3_600_000,
      rules: [
        { id: 'anomaly', kind: 'device_anomaly' },
        { id: 'quality', kind: 'data_quality', below: 0.95, windowS: 600, minCount: 3 },
      ],
    },
  });
  t.teardown(() => cloud.stop());
  const url = cloud.url;
  const mk = async (role: 'viewer' | 'operator' | 'admin' | 'collector', site: string | null = null): Promise<string> =>
    (await cloud.tokens.create({ role, site, createdBy: 'test' })).token;
  const admin = await mk('admin');
  const operator = await mk('operator');
  const viewer = await mk('viewer');
  const viewerB = await mk('viewer', 'site-b');

  await t.test('alerts from real data: listed, acknowledged and silenced (audited), scoped', async (t) => {
    const rs = readings(6).map((r, i) => ({ ...r, ...(i === 5 ? { alert: true, score: 0.99 } : {}) }));
    const landed = await call('POST', `${url}/v1/ingest`, { token: admin, body: envelope('b-1', 'site-a', [telemetry('pump-1', 1, rs)]) });
    t.equal(landed.status, 200, JSON.stringify(landed.body));
    await cloud.alerting.engine.evaluate();
    const list = await call('GET', `${url}/v1/alerts`, { token: viewer });
    const byRule = Object.fromEntries(
      list.body.items.map((a: { ruleId: string; key: string; state: string }) => [a.ruleId, [a.key, a.state]]),
    );
    t.same(byRule, { anomaly: ['pump-1', 'firing'], quality: ['site-a', 'firing'] }, 'anomaly and a 2/3 quality score both fire');
    const anomaly = list.body.items.find((a: { ruleId: string }) => a.ruleId === 'anomaly');
    t.equal(
      (await call('POST', `${url}/v1/alerts/${anomaly.id}/ack`, { token: viewer, body: {} })).status,
      403,
      'a viewer cannot acknowledge',
    );
    const acked = await call('POST', `${url}/v1/alerts/${anomaly.id}/ack`, { token: operator, body: { note: 'checking the bearing' } });
    t.same([acked.status, acked.body.ackNote], [200, 'checking the bearing']);
    const sil = await call('POST', `${url}/v1/alert-silences`, {
      token: operator,
      body: { ruleId: 'quality', site: 'site-a', durationS: 3600, comment: 'sensor swap' },
    });
    t.equal(sil.status, 201);
    const q = await call('GET', `${url}/v1/alerts?rule=quality`, { token: viewer });
    t.equal(q.body.items[0].silenced, true);
    const audit = await call('GET', `${url}/v1/audit?limit=50`, { token: admin });
    const actions = audit.body.items.map((e: { action: string }) => e.action);
    t.ok(actions.includes('alert.ack') && actions.includes('alert.silence'), 'ack and silence are audited');
    t.same((await call('GET', `${url}/v1/alerts`, { token: viewerB })).body.items, [], 'a site-b viewer sees none of site-a');
    t.equal((await call('GET', `${url}/v1/alerts/${anomaly.id}`, { token: viewerB })).status, 403);
    t.equal((await call('GET', `${url}/v1/alert-notifications`, { token: viewerB })).status, 403);
    t.equal((await call('GET', `${url}/v1/alerts?device=pump-1&state=all`, { token: viewer })).body.items.length, 1, 'the twin page query');
  });

  await t.test('rules over the API; config rules are read-only', async (t) => {
    const rule = { id: 'offline-a', kind: 'device_offline', afterS: 900, site: 'site-a', severity: 'warning' };
    t.equal((await call('POST', `${url}/v1/alert-rules`, { token: viewer, body: rule })).status, 403);
    t.equal((await call('POST', `${url}/v1/alert-rules`, { token: operator, body: rule })).status, 201);
    t.equal((await call('POST', `${url}/v1/alert-rules`, { token: operator, body: rule })).status, 409, 'exists');
    t.equal(
      (await call('POST', `${url}/v1/alert-rules`, { token: operator, body: { id: 'x', kind: 'signal' } })).status,
      400,
      'signal needs a name',
    );
    t.equal(
      (
        await call('POST', `${url}/v1/alert-rules`, {
          token: operator,
          body: { id: 'y', kind: 'device_offline', destinations: ['nowhere'] },
        })
      ).status,
      400,
    );
    t.same(
      (await put(`${url}/v1/alert-rules/quality`, operator, { id: 'quality', kind: 'data_quality', below: 0.5 })).status,
      409,
      'config rule',
    );
    t.equal((await put(`${url}/v1/alert-rules/offline-a`, operator, { ...rule, afterS: 1800 })).status, 200);
    const rules = await call('GET', `${url}/v1/alert-rules`, { token: viewer });
    t.same(
      rules.body.items.map((r: { id: string; origin: string }) => `${r.id}:${r.origin}`),
      ['anomaly:config', 'offline-a:api', 'quality:config'],
    );
    t.equal(await del(`${url}/v1/alert-rules/offline-a`, operator), 204);
    t.equal(await del(`${url}/v1/alert-rules/quality`, operator), 409);
  });

  await t.test('OIDC sign-in: roles from the token; refusals audited, at most 10 a minute per address', async (t) => {
    const analyst = await idp.sign({ sub: 'ann', preferred_username: 'ann@example.com', roles: ['DataAnalyst'] });
    t.equal((await call('GET', `${url}/v1/alerts`, { token: analyst })).status, 200);
    t.equal(
      (await call('POST', `${url}/v1/alert-rules`, { token: analyst, body: { id: 'z', kind: 'device_offline' } })).status,
      403,
      'viewer role',
    );
    const eng = await idp.sign({ sub: 'erin', roles: ['DataEngineer'] });
    t.equal((await call('POST', `${url}/v1/alert-rules`, { token: eng, body: { id: 'z', kind: 'device_offline' } })).status, 201);
    const expired = await idp.sign({ roles: ['DataAnalyst'], exp: Math.floor(Date.now() / 1000) - 3600 });
    const r = await call('GET', `${url}/v1/twins`, { token: expired });
    t.same([r.status, r.body.details?.reason], [401, 'expired']);
    const stranger = await call('GET', `${url}/v1/twins`, { token: await idp.sign({ groups: ['unknown-group'] }) });
    t.same([stranger.status, stranger.body.details?.reason], [403, 'no_role_mapping']);
    for (let i = 0; i < 12; i++) await call('GET', `${url}/v1/twins`, { token: `etk_guess_${i}_aaaaaaaaaaaaaaaa` });
    const failed = (await cloud.audit.list({ action: 'auth.failed', limit: 100 })).items;
    t.ok(failed.length <= 10, `${failed.length} audited in this minute (the rest counted, not written)`);
    t.same(new Set(failed.map((e) => (e.detail as { reason: string }).reason)), new Set(['expired', 'no_role_mapping', 'unknown_token']));
    t.notOk(JSON.stringify(failed).includes('etk_guess'), 'the presented token is never recorded');
  });

  await t.test('static token expiry', async (t) => {
    const { token, info } = await cloud.tokens.create({ role: 'viewer', createdBy: 'test', expiresAt: Date.now() + 3_600_000 });
    // The clock moves on: the token's hour is over before it is first used.
    await cloud.store.run('UPDATE tokens SET expires_at = ? WHERE id = ?', [Date.now() - 1, info.id]);
    t.equal((await call('GET', `${url}/v1/twins`, { token })).status, 401);
  });

  await t.test('429 + Retry-After per principal; ingest per site holds one site back, not another', async (t) => {
    const hot = await mk('viewer');
    let first429: Awaited<ReturnType<typeof call>> | undefined;
    for (let i = 0; i < 50 && !first429; i++) {
      const r = await call('GET', `${url}/v1/alerts`, { token: hot });
      if (r.status === 429) first429 = r;
    }
    t.ok(first429, 'over the burst: 429');
    t.same([first429!.body.code, Number(first429!.headers['retry-after']) >= 1], ['EDGETWIN_ERR_RATE_LIMITED', true]);
    t.equal((await call('GET', `${url}/v1/alerts`, { token: viewer })).status, 200, 'another principal is not affected');
    const collectorA = await mk('collector', 'site-a');
    const collectorB = await mk('collector', 'site-b');
    const post = (token: string, site: string, id: string, n: number) =>
      call('POST', `${url}/v1/ingest`, {
        token,
        body: envelope(id, site, [telemetry(`${site}-dev`, 1, readings(n, Number(id.slice(2)) * 100))]),
      });
    t.equal((await post(collectorA, 'site-a', 'a-1', 50)).status, 200, 'within the burst');
    const refused = await post(collectorA, 'site-a', 'a-2', 50);
    t.same([refused.status, refused.body.code, refused.body.details?.site], [429, 'EDGETWIN_ERR_RATE_LIMITED', 'site-a']);
    t.ok(Number(refused.headers['retry-after']) >= 1);
    t.equal((await post(collectorB, 'site-b', 'b-2', 50)).status, 200, 'site-b still ingests while site-a waits');
  });
});
