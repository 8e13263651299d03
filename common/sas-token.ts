/**
 * Azure IoT Hub shared-access-signature tokens: what devices present as their MQTT password.
 * `SharedAccessSignature sr={uri}&sig={hmac}&se={expiry}` where the signature is
 * HMAC-SHA256(base64-decoded key, `${encodeURIComponent(uri)}\n${expiry}`), base64, URL-encoded.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { EdgetwinError, ErrorCodes } from './errors.js';

export interface SasToken {
  /** Resource URI, e.g. `myhub.azure-devices.net/devices/pump-7` (compared case-insensitively). */
  sr: string;
  sig: string;
  /** Expiry, seconds since the Unix epoch. */
  se: number;
  skn?: string;
}

function sign(uri: string, expiry: number, keyBase64: string): string {
  return createHmac('sha256', Buffer.from(keyBase64, 'base64'))
    .update(`${encodeURIComponent(uri)}\n${expiry}`)
    .digest('base64');
}

export function createSasToken(uri: string, keyBase64: string, expiresAtS: number, keyName?: string): string {
  const sig = sign(uri, expiresAtS, keyBase64);
  const skn = keyName ? `&skn=${encodeURIComponent(keyName)}` : '';
  return `SharedAccessSignature sr=${encodeURIComponent(uri)}&sig=${encodeURIComponent(sig)}&se=${expiresAtS}${skn}`;
}

export function parseSasToken(token: string): SasToken {
  const prefix = 'SharedAccessSignature ';
  if (!token.startsWith(prefix)) throw new EdgetwinError(ErrorCodes.UNAUTHORIZED, 'not a SharedAccessSignature token');
  const fields = new URLSearchParams(token.slice(prefix.length));
  const sr = fields.get('sr');
  const sig = fields.get('sig');
  const se = Number(fields.get('se'));
  if (!sr || !sig || !Number.isInteger(se)) throw new EdgetwinError(ErrorCodes.UNAUTHORIZED, 'SAS token lacks sr, sig or se');
  const skn = fields.get('skn');
  return skn ? { sr, sig, se, skn } : { sr, sig, se };
}

/**
 * Checks a token against a device key: signature, expiry, and that the resource is this device.
 * Throws EDGETWIN_ERR_UNAUTHORIZED with the reason (for logs and counters, never for the client).
 */
export function verifySasToken(token: string, deviceId: string, keyBase64: string, nowS = Math.floor(Date.now() / 1000)): SasToken {
  const t = parseSasToken(token);
  if (t.se <= nowS) throw new EdgetwinError(ErrorCodes.UNAUTHORIZED, 'SAS token expired', { details: { reason: 'expired' } });
  const path = t.sr.toLowerCase().replace(/\/+$/, '');
  if (!path.endsWith(`/devices/${deviceId.toLowerCase()}`)) {
    throw new EdgetwinError(ErrorCodes.UNAUTHORIZED, 'SAS token is for another resource', { details: { reason: 'resource' } });
  }
  const expected = Buffer.from(sign(t.sr, t.se, keyBase64));
  const got = Buffer.from(t.sig);
  if (expected.length !== got.length || !timingSafeEqual(expected, got)) {
    throw new EdgetwinError(ErrorCodes.UNAUTHORIZED, 'SAS token signature mismatch', { details: { reason: 'signature' } });
  }
  return t;
}
