/** The broker's listeners and per-device limits (section `mqtt` of the collector's config). */
import Type, { type Static } from 'typebox';
import { listenerProperties } from '../../common/admin-http.js';
import { Section } from '../../common/config.js';

const tlsListenerSchema = Section({
  enabled: Type.Boolean({ default: false }),
  ...listenerProperties('127.0.0.1', 8883),
  /** PEM server certificate chain and key (the key file should be mode 600). */
  certFile: Type.Optional(Type.String({ minLength: 1 })),
  keyFile: Type.Optional(Type.String({ minLength: 1 })),
  /** PEM CA that client certificates must chain to (with clientCerts `request` or `require`). */
  caFile: Type.Optional(Type.String({ minLength: 1 })),
  /** `require`: a TLS client without a certificate signed by caFile never reaches MQTT. */
  clientCerts: Type.Enum(['none', 'request', 'require'], { default: 'none' }),
});
export type TlsListenerConfig = Static<typeof tlsListenerSchema>;

const wsListenerSchema = Section({
  enabled: Type.Boolean({ default: false }),
  ...listenerProperties('127.0.0.1', 8080),
  /** Only upgrades on this path are accepted; unset accepts any path (IoT Hub's is `/$iothub/websocket`). */
  path: Type.Optional(Type.String({ pattern: '^/' })),
  /** wss: uses mqtt.tls.certFile/keyFile. */
  tls: Type.Boolean({ default: false }),
});
export type WsListenerConfig = Static<typeof wsListenerSchema>;

const rateLimitSchema = Section({
  /** Sustained publishes per second per device; 0 turns the limit off. */
  messagesPerS: Type.Number({ minimum: 0, default: 1000 }),
  /** Publishes a device may send at once above the sustained rate. */
  burst: Type.Integer({ minimum: 1, default: 2000 }),
  /** `delay`: hold the PUBACK until the device is within its rate (back-pressure, nothing lost); `disconnect`: drop the connection unacknowledged (the device resends later). */
  onExceed: Type.Enum(['delay', 'disconnect'], { default: 'delay' }),
});
export type RateLimitConfig = Static<typeof rateLimitSchema>;

export const mqttListenerConfigSchema = Section({
  /** The plain-TCP listener (`mqtt://`); off for a TLS-only collector. */
  enabled: Type.Boolean({ default: true }),
  // 0 picks a free port.
  ...listenerProperties('127.0.0.1', 1883),
  /** Largest accepted PUBLISH payload. */
  maxPayloadBytes: Type.Integer({ minimum: 1024, maximum: 268435455, default: 1024 * 1024 }),
  /** Connected clients across all listeners; more are refused with CONNACK 3 (server unavailable). */
  maxConnections: Type.Integer({ minimum: 1, default: 10_000 }),
  /** A connection that has not completed CONNECT (TLS handshake, WebSocket upgrade, CONNACK sent) by then is closed. */
  connectTimeoutMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 10_000 }),
  /** Connections still without CONNACK, across all listeners; a new one beyond it closes the oldest pending one. */
  maxPendingConnections: Type.Integer({ minimum: 1, default: 1000 }),
  rateLimit: rateLimitSchema,
  tls: tlsListenerSchema,
  ws: wsListenerSchema,
});
export type MqttListenerConfig = Static<typeof mqttListenerConfigSchema>;
