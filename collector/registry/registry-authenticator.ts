/**
 * Authenticates devices against the registry: an IoT Hub SAS token signed with the device's key,
 * a password checked against its scrypt hash, or a verified TLS client certificate whose CN is
 * the device id. The reason for a refusal goes to logs and metrics, never to the client.
 */
import { randomBytes } from 'node:crypto';
import { isEdgetwinError } from '../../common/errors.js';
import { verifySasToken } from '../../common/sas-token.js';
import { refused, type AuthContext, type Authenticated, type DeviceAuthenticator } from '../broker/auth.js';
import { hashPassword, verifyPassword, type DeviceRegistry } from './device-registry.js';

export class RegistryAuthenticator implements DeviceAuthenticator {
  constructor(
    private readonly registry: DeviceRegistry,
    private readonly now: () => number = Date.now,
  ) {}

  async authenticate(
    clientId: string,
    _username: string | undefined,
    password: Buffer | undefined,
    ctx?: AuthContext,
  ): Promise<Authenticated> {
    const dev = this.registry.get(clientId);
    if (!dev || dev.status !== 'active') {
      // As slow as a wrong password would be: the time to refuse must not tell which ids exist.
      await this.spendLikeAPassword(password);
      throw dev
        ? refused('revoked', `device ${clientId} is revoked`)
        : refused('unknown_device', `device ${clientId} is not in the registry`);
    }
    switch (dev.credential) {
      case 'sas': {
        if (!password?.length || !dev.key) throw refused('no_credential', 'no SAS token given');
        try {
          const t = verifySasToken(password.toString('utf8'), clientId, dev.key, Math.floor(this.now() / 1000));
          return { device: clientId, expiresAtMs: t.se * 1000 };
        } catch (err) {
          const reason = isEdgetwinError(err) && err.details?.['reason'] === 'expired' ? 'expired' : 'bad_token';
          throw refused(reason, isEdgetwinError(err) ? err.message : 'bad SAS token');
        }
      }
      case 'password':
        if (!password?.length || !dev.passwordHash) throw refused('no_credential', 'no password given');
        if (!(await verifyPassword(password.toString('utf8'), dev.passwordHash))) throw refused('bad_password', 'wrong password');
        // A revoke may have landed during the hash.
        if (!this.registry.isActive(clientId)) throw refused('revoked', `device ${clientId} is revoked`);
        return { device: clientId };
      case 'x509':
        if (!ctx?.tls?.authorized || ctx.tls.cn !== clientId)
          throw refused('certificate', 'no verified client certificate with CN = device id');
        return { device: clientId };
    }
  }

  private dummyHash: Promise<string> | undefined;

  private async spendLikeAPassword(password: Buffer | undefined): Promise<void> {
    if (!password?.length || password.subarray(0, 22).toString('latin1') === 'SharedAccessSignature ') return;
    this.dummyHash ??= hashPassword(randomBytes(16).toString('hex'));
    await verifyPassword(password.toString('utf8'), await this.dummyHash);
  }

  generation(): number {
    return this.registry.generation();
  }

  stillAllowed(device: string): boolean {
    return this.registry.isActive(device);
  }
}
