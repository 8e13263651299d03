/**
 * Who may connect. The broker asks a DeviceAuthenticator for the device id behind a CONNECT;
 * every later ACL check keys on that id, never on what the client claims in a topic or payload.
 */
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';

/** What the transport knows about the connection (a verified TLS client certificate). */
export interface AuthContext {
  tls?: { authorized: boolean; cn?: string | undefined };
}

export interface Authenticated {
  device: string;
  /** The credential stops being valid then (a SAS token's `se`): the device is disconnected. */
  expiresAtMs?: number;
}

/** Why a CONNECT was refused: the label of `edgetwin_broker_auth_failures_total`. */
export type AuthRefusalReason =
  'client_id' | 'unknown_device' | 'revoked' | 'no_credential' | 'bad_token' | 'expired' | 'bad_password' | 'certificate';

export function refused(reason: AuthRefusalReason, message: string): EdgetwinError {
  return new EdgetwinError(ErrorCodes.UNAUTHORIZED, message, { details: { reason } });
}

export interface DeviceAuthenticator {
  /** Resolves to the device id (or more), or undefined / a `refused()` error to refuse the connection. */
  authenticate(
    clientId: string,
    username: string | undefined,
    password: Buffer | undefined,
    ctx?: AuthContext,
  ): Promise<string | Authenticated | undefined> | string | Authenticated | undefined;
  /** Changes whenever a device may have lost its right to stay connected (revocation). */
  generation?(): number;
  /** False once a connected device must be dropped (revoked or removed). */
  stillAllowed?(device: string): boolean;
}

/**
 * The device id a CONNECT username names, if any: IoT Hub's `{hostName}/{deviceId}/?api-version=…`
 * (what Azure's device SDK sends) or a bare device id.
 */
export function deviceFromUsername(username: string | undefined): string | undefined {
  if (!username) return undefined;
  if (!username.includes('/')) return username;
  return username.split('/')[1] || undefined;
}

/**
 * Accepts any client and takes its client id as the device id: what the loopback demo and tests
 * use when no device registry is configured. The collector refuses auth.mode "open" on any
 * listener that is not on loopback.
 */
export class OpenAuthenticator implements DeviceAuthenticator {
  authenticate(clientId: string): string | undefined {
    return clientId.length > 0 ? clientId : undefined;
  }
}
