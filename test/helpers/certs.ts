/**
 * A throwaway PKI for TLS tests, made with the `openssl` command (Debian package `openssl`, in
 * .ci/run's APT_PACKAGES): a CA, a server certificate for 127.0.0.1/localhost, and client
 * certificates whose CN is a device id.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestPki {
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  ca: Buffer;
  /** Makes a client certificate with CN = cn, signed by this CA (or by `otherCa` when given). */
  client(cn: string): { certFile: string; keyFile: string; cert: Buffer; key: Buffer };
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export function makePki(dir: string, name = 'ca'): TestPki {
  const ca = `${name}.pem`;
  const caKey = `${name}.key`;
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '2',
      '-subj',
      `/CN=edgetwin test ${name}`,
      '-keyout',
      caKey,
      '-out',
      ca,
    ],
    dir,
  );
  const sign = (base: string, subj: string, ext: string): void => {
    openssl(
      [
        'req',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-subj',
        subj,
        '-keyout',
        `${base}.key`,
        '-out',
        `${base}.csr`,
      ],
      dir,
    );
    writeFileSync(join(dir, `${base}.ext`), ext);
    openssl(
      [
        'x509',
        '-req',
        '-in',
        `${base}.csr`,
        '-CA',
        ca,
        '-CAkey',
        caKey,
        '-CAcreateserial',
        '-days',
        '2',
        '-extfile',
        `${base}.ext`,
        '-out',
        `${base}.pem`,
      ],
      dir,
    );
  };
  sign(`${name}-server`, '/CN=localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  return {
    dir,
    caFile: join(dir, ca),
    certFile: join(dir, `${name}-server.pem`),
    keyFile: join(dir, `${name}-server.key`),
    ca: readFileSync(join(dir, ca)),
    client(cn: string) {
      const base = `${name}-client-${cn}`;
      sign(base, `/CN=${cn}`, 'extendedKeyUsage=clientAuth\n');
      const certFile = join(dir, `${base}.pem`);
      const keyFile = join(dir, `${base}.key`);
      return { certFile, keyFile, cert: readFileSync(certFile), key: readFileSync(keyFile) };
    },
  };
}
