/**
 * What the uplink presents as MQTT username and password: a fixed password (env or a mode-600
 * file), or an IoT Hub-style SAS token signed with the device key, for resource
 * `{sasHostName}/devices/{deviceId}`. A token is made afresh when 80 % of its lifetime has passed;
 * the uplink reconnects with the new one before the old one expires (brokers check tokens at
 * CONNECT, and IoT Hub drops a connection whose token has expired).
 */
import Type, { type Static } from 'typebox';
import { readSecretFile, Section } from '../../common/config.js';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import { createSasToken } from '../../common/sas-token.js';

/** The uplink's credential keys (part of the `uplink` config section). */
export const uplinkAuthProperties = {
  /** Defaults to the device id. */
  username: Type.Optional(Type.String()),
  password: Type.Optional(Type.String()),
  /** Mode 600. */
  passwordFile: Type.Optional(Type.String({ minLength: 1 })),
  /** Base64 device key for SAS tokens (env EDGETWIN_UPLINK_SAS_KEY). */
  sasKey: Type.Optional(Type.String({ minLength: 1 })),
  /** Base64 device key in a mode-600 file. */
  sasKeyFile: Type.Optional(Type.String({ minLength: 1 })),
  /** Policy name (`skn`) for tokens signed with a shared access policy rather than the device's own key. */
  sasKeyName: Type.Optional(Type.String({ minLength: 1 })),
  /** Lifetime of each token. */
  sasTokenTtlS: Type.Integer({ minimum: 5, maximum: 31_536_000, default: 3600 }),
  /** Host part of the token's resource URI; defaults to the uplink URL's host. */
  sasHostName: Type.Optional(Type.String({ minLength: 1 })),
};
const uplinkAuthSchema = Section(uplinkAuthProperties);
export type UplinkAuthConfig = Static<typeof uplinkAuthSchema>;

export class UplinkCredentials {
  private readonly key: string | undefined;
  private readonly fixedPassword: string | undefined;
  private token: { value: string; renewAt: number; expiresAt: number } | undefined;

  constructor(
    private readonly cfg: UplinkAuthConfig,
    private readonly deviceId: string,
    private readonly urlHost: string,
    private readonly now: () => number = Date.now,
  ) {
    this.key = cfg.sasKeyFile ? readSecretFile(cfg.sasKeyFile, 'uplink.sasKeyFile') : cfg.sasKey;
    this.fixedPassword = cfg.passwordFile ? readSecretFile(cfg.passwordFile, 'uplink.passwordFile') : cfg.password;
    if (this.key !== undefined && this.fixedPassword !== undefined) {
      throw new EdgetwinError(ErrorCodes.CONFIG, 'agent config: set either uplink.password(File) or uplink.sasKey(File), not both');
    }
    if (this.key !== undefined && Buffer.from(this.key, 'base64').length < 16) {
      throw new EdgetwinError(ErrorCodes.CONFIG, 'agent config: key "uplink.sasKey" must be a base64 key of at least 16 bytes');
    }
  }

  get usesSas(): boolean {
    return this.key !== undefined;
  }

  get username(): string {
    return this.cfg.username ?? this.deviceId;
  }

  get resourceUri(): string {
    return `${this.cfg.sasHostName ?? this.urlHost}/devices/${this.deviceId}`;
  }

  /** The password for the next CONNECT: the fixed one, or a SAS token that is still fresh. */
  password(): string | undefined {
    if (this.key === undefined) return this.fixedPassword;
    const now = this.now();
    if (!this.token || now >= this.token.renewAt) {
      const ttlMs = this.cfg.sasTokenTtlS * 1000;
      const expiresAt = Math.floor((now + ttlMs) / 1000);
      this.token = {
        value: createSasToken(this.resourceUri, this.key, expiresAt, this.cfg.sasKeyName),
        renewAt: now + ttlMs * 0.8,
        expiresAt: expiresAt * 1000,
      };
    }
    return this.token.value;
  }

  /** When the token in use should be replaced (undefined without SAS). */
  get renewAt(): number | undefined {
    return this.token?.renewAt;
  }
}
