/**
 * OIDC bearer tokens against a local issuer with its own discovery document and JWKS over HTTP:
 * role/site mapping, JWKS caching and key rotation, and every refusal a hostile or stale token
 * should meet (expired, not yet valid, wrong audience, wrong issuer, tampered payload, forged key,
 * alg confusion HS256-with-the-public-key and `none`, unknown group, issuer unreachable).
 */
import { SignJWT } from 'jose';
import t from 'tap';
import { OidcVerifier, oidcDefaults, checkOidcConfig, type OidcConfig } from '../../cloud/auth/oidc.js';
import { EdgetwinError, isEdgetwinError } from '../../common/errors.js';
import { startOidcIssuer } from '../helpers/oidc-issuer.js';

const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');

t.test('OIDC tokens', async (t) => {
  const idp = await startOidcIssuer();
  t.teardown(() => idp.close());
  const cfg: OidcConfig = {
    ...oidcDefaults,
    enabled: true,
    issuer: idp.issuer,
    audience: ['api://edgetwin'],
    jwksCooldownMs: 0,
    mapping: [
      { value: 'SecurityOps', role: 'admin' },
      { value: 'DataEngineer', role: 'operator' },
      { value: 'group-site-a-operators', role: 'operator', site: 'site-a' },
      { value: 'DataAnalyst', role: 'viewer' },
    ],
  };
  const v = new OidcVerifier(cfg);
  const refusal = async (token: string): Promise<{ code: string; reason: unknown }> => {
    try {
      await v.verify(token);
    } catch (err) {
      if (!isEdgetwinError(err)) throw err;
      return { code: err.code, reason: err.details?.['reason'] };
    }
    return { code: 'accepted', reason: null };
  };
  const unauthorized = (reason: string) => ({ code: 'EDGETWIN_ERR_UNAUTHORIZED', reason });

  await t.test('roles and groups map onto roles and site scopes, first entry wins', async (t) => {
    const eng = await v.verify(await idp.sign({ roles: ['DataAnalyst', 'DataEngineer'], preferred_username: 'erin@example.com' }));
    t.same([eng.role, eng.site, eng.name], ['operator', null, 'oidc:erin@example.com'], 'DataEngineer is listed before DataAnalyst');
    t.match(eng.id, /^oidc_[0-9a-f]{12}$/);
    t.ok(eng.expiresAt && eng.expiresAt > Date.now(), 'expiresAt from exp (streams end then)');
    const scoped = await v.verify(await idp.sign({ sub: 'u2', groups: ['group-site-a-operators'] }));
    t.same([scoped.role, scoped.site, scoped.name], ['operator', 'site-a', 'oidc:u2'], 'a group id scopes to its site');
    const sec = await v.verify(await idp.sign({ sub: 'u3', roles: 'SecurityOps' }));
    t.equal(sec.role, 'admin', 'a single-string claim counts too');
    t.not(sec.id, eng.id, 'ids differ per subject');
    t.equal(idp.jwksFetches(), 1, 'the JWKS is fetched once and cached');
  });

  await t.test('unknown group: 403, the identity has no role here', async (t) => {
    const r = await refusal(await idp.sign({ groups: ['some-other-group'], roles: ['Reader'] }));
    t.same(r, { code: 'EDGETWIN_ERR_FORBIDDEN', reason: 'no_role_mapping' });
    t.same(await refusal(await idp.sign({})), { code: 'EDGETWIN_ERR_FORBIDDEN', reason: 'no_role_mapping' }, 'no roles claim at all');
  });

  await t.test('expired, not yet valid, wrong audience, wrong issuer', async (t) => {
    const now = Math.floor(Date.now() / 1000);
    t.same(await refusal(await idp.sign({ roles: ['DataAnalyst'], exp: now - 120 })), unauthorized('expired'));
    t.equal((await refusal(await idp.sign({ roles: ['DataAnalyst'], exp: now - 30 }))).code, 'accepted', 'inside the 60 s clock tolerance');
    t.same(await refusal(await idp.sign({ roles: ['DataAnalyst'], nbf: now + 600 })), unauthorized('not_yet_valid'));
    t.same(await refusal(await idp.sign({ roles: ['DataAnalyst'], aud: 'api://another-app' })), unauthorized('wrong_audience'));
    t.same(
      await refusal(await idp.sign({ roles: ['DataAnalyst'], iss: 'https://login.example.com/other/v2.0' })),
      unauthorized('wrong_issuer'),
    );
    const noExp = await idp.sign({ roles: ['DataAnalyst'], exp: undefined });
    t.equal((await refusal(noExp)).code, 'EDGETWIN_ERR_UNAUTHORIZED', 'a token without exp never lives forever');
  });

  await t.test('tampered payload and a key the issuer never published', async (t) => {
    const good = await idp.sign({ roles: ['DataAnalyst'] });
    const [h, , s] = good.split('.');
    const forgedPayload = b64({
      iss: idp.issuer,
      aud: 'api://edgetwin',
      sub: 'user-1',
      exp: Math.floor(Date.now() / 1000) + 600,
      roles: ['SecurityOps'],
    });
    t.same(await refusal(`${h}.${forgedPayload}.${s}`), unauthorized('bad_signature'), 'payload changed, signature kept');
    const attacker = await startOidcIssuer();
    t.teardown(() => attacker.close());
    const forged = await new SignJWT({ iss: idp.issuer, aud: 'api://edgetwin', sub: 'mallory', roles: ['SecurityOps'] })
      .setProtectedHeader({ alg: 'RS256', kid: idp.currentKid() })
      .setExpirationTime('10m')
      .sign((await generateAttackerKey()).privateKey);
    t.same(await refusal(forged), unauthorized('bad_signature'), "another key under the issuer's kid");
  });

  await t.test('alg confusion: HS256 keyed with the public key, and alg none', async (t) => {
    const pem = await idp.publicPem();
    const hs = await new SignJWT({ iss: idp.issuer, aud: 'api://edgetwin', sub: 'mallory', roles: ['SecurityOps'] })
      .setProtectedHeader({ alg: 'HS256', kid: idp.currentKid() })
      .setExpirationTime('10m')
      .sign(new TextEncoder().encode(pem));
    t.same(await refusal(hs), unauthorized('alg_not_allowed'));
    const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ iss: idp.issuer, aud: 'api://edgetwin', sub: 'm', exp: 4e9, roles: ['SecurityOps'] })}.`;
    t.equal((await refusal(none)).code, 'EDGETWIN_ERR_UNAUTHORIZED', 'unsigned token');
    t.ok(['alg_not_allowed', 'malformed'].includes(String((await refusal(none)).reason)));
  });

  await t.test('key rotation: a new kid re-fetches the JWKS; the retired key is refused', async (t) => {
    const before = idp.jwksFetches();
    const oldToken = await idp.sign({ sub: 'old', roles: ['DataAnalyst'] });
    await idp.rotate();
    const fresh = await v.verify(await idp.sign({ sub: 'new', roles: ['DataAnalyst'] }));
    t.equal(fresh.role, 'viewer', 'signed with the new key: accepted after one re-fetch');
    t.equal(idp.jwksFetches(), before + 1);
    t.same(await refusal(oldToken), unauthorized('unknown_key'), 'signed with the retired key');
  });

  await t.test('issuer unreachable or lying: 503 IDENTITY_PROVIDER, not a 401', async (t) => {
    const down = new OidcVerifier({ ...cfg, issuer: 'http://127.0.0.1:9/tenant/v2.0' });
    const e = await down.verify(await idp.sign({ roles: ['DataAnalyst'] })).catch((err: EdgetwinError) => err);
    t.same([(e as EdgetwinError).code, (e as EdgetwinError).status], ['EDGETWIN_ERR_IDENTITY_PROVIDER', 503]);
    const lying = new OidcVerifier({ ...cfg, issuer: idp.issuer.replace('/tenant/', '/tenant/../tenant/') });
    const e2 = await lying.verify(await idp.sign({})).catch((err: EdgetwinError) => err);
    t.equal((e2 as EdgetwinError).code, 'EDGETWIN_ERR_IDENTITY_PROVIDER', 'a discovery document naming another issuer is not trusted');
  });

  t.test('config checks', async (t) => {
    const fail = (key: string, msg: string): Error => new Error(`${key} ${msg}`);
    t.throws(() => checkOidcConfig({ ...cfg, issuer: 'http://login.example.com/x' }, fail), /auth.oidc.issuer must be https/);
    t.throws(() => checkOidcConfig({ ...cfg, audience: [] }, fail), /audience/);
    t.throws(() => checkOidcConfig({ ...cfg, mapping: [{ value: 'x', role: 'collector' }] }, fail), /mapping\[0\].site/);
    t.doesNotThrow(() => checkOidcConfig(cfg, fail), 'http is fine on loopback');
  });
});

async function generateAttackerKey(): Promise<{ privateKey: import('jose').CryptoKey }> {
  const { generateKeyPair } = await import('jose');
  return generateKeyPair('RS256');
}
