/**
 * A local OIDC issuer for tests: its own discovery document and JWKS over real HTTP on 127.0.0.1,
 * RSA keys made by jose, tokens signed like Entra ID's (RS256, `kid` in the header). `rotate()`
 * publishes a new key (the old one is dropped unless kept), as an issuer does on key rollover.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';

interface Key {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export interface OidcIssuer {
  issuer: string;
  jwksUri: string;
  /** JWKS requests served so far (cache and rotation checks). */
  jwksFetches(): number;
  /** A token signed with the current key; `claims` override the defaults (sub, aud, exp in 10 min). */
  sign(claims?: JWTPayload, opts?: { kid?: string; key?: CryptoKey; alg?: string }): Promise<string>;
  /** Adds a new current key; `keepOld` leaves the previous one in the JWKS. */
  rotate(keepOld?: boolean): Promise<void>;
  currentKid(): string;
  /** The public key of the current key as PEM (for the alg-confusion attack). */
  publicPem(): Promise<string>;
  close(): Promise<void>;
}

async function newKey(n: number): Promise<Key> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = `key-${n}`;
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' } };
}

export async function startOidcIssuer(audience = 'api://edgetwin'): Promise<OidcIssuer> {
  let keys: Key[] = [await newKey(1)];
  let fetches = 0;
  let n = 1;
  let base = '';
  const server: Server = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.url === '/tenant/v2.0/.well-known/openid-configuration') {
      res.end(
        JSON.stringify({ issuer: `${base}/tenant/v2.0`, jwks_uri: `${base}/keys`, id_token_signing_alg_values_supported: ['RS256'] }),
      );
    } else if (req.url === '/keys') {
      fetches++;
      res.end(JSON.stringify({ keys: keys.map((k) => k.publicJwk) }));
    } else {
      res.statusCode = 404;
      res.end('{}');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const issuer = `${base}/tenant/v2.0`;
  const current = (): Key => keys[keys.length - 1]!;
  return {
    issuer,
    jwksUri: `${base}/keys`,
    jwksFetches: () => fetches,
    currentKid: () => current().kid,
    async sign(claims = {}, opts = {}) {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ iss: issuer, aud: audience, sub: 'user-1', iat: now, nbf: now, exp: now + 600, ...claims })
        .setProtectedHeader({ alg: opts.alg ?? 'RS256', kid: opts.kid ?? current().kid, typ: 'JWT' })
        .sign(opts.key ?? current().privateKey);
    },
    async rotate(keepOld = false) {
      const k = await newKey(++n);
      keys = keepOld ? [...keys, k] : [k];
    },
    async publicPem() {
      const { createPublicKey } = await import('node:crypto');
      return createPublicKey({ key: current().publicJwk as import('node:crypto').JsonWebKey, format: 'jwk' })
        .export({ type: 'spki', format: 'pem' })
        .toString();
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
