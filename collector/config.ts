import { join } from 'node:path';
import { adminHttpConfigSchema, type AdminHttpConfig } from '../common/admin-http.js';
import type { BackoffConfig } from '../common/backoff.js';
import { loadConfig, type EnvMap } from '../common/config.js';
import { logConfigSchema, type LogConfig } from '../common/log.js';
import type { SynchronousMode } from '../common/sqlite.js';
import type { WhenFull } from '../common/outbox.js';
import { EdgetwinError, ErrorCodes } from '../common/errors.js';
import { checkEventHubsSinkConfig, eventHubsSinkConfigSchema, eventHubsSinkDefaults, type EventHubsSinkConfig } from './sinks/event-hubs.js';
import { fileSinkConfigSchema, fileSinkDefaults, type FileSinkConfig } from './sinks/file.js';
import { httpIngestSinkConfigSchema, httpIngestSinkDefaults, type HttpIngestSinkConfig } from './sinks/http-ingest.js';
import { collectorTwinConfigSchema, collectorTwinDefaults, type CollectorTwinConfig } from './twin/collector-twin.js';
import { collectorModelsConfigSchema, collectorModelsDefaults, type CollectorModelsConfig } from './models/config.js';
import { siteStatusConfigSchema, siteStatusDefaults, type SiteStatusConfig } from './twin/site-status.js';

export interface TlsListenerConfig {
  enabled: boolean;
  host: string;
  port: number;
  /** PEM server certificate chain and key (the key file should be mode 600). */
  certFile?: string;
  keyFile?: string;
  /** PEM CA that client certificates must chain to (with clientCerts `request` or `require`). */
  caFile?: string;
  /** `require`: a TLS client without a certificate signed by caFile never reaches MQTT. */
  clientCerts: 'none' | 'request' | 'require';
}

export interface WsListenerConfig {
  enabled: boolean;
  host: string;
  port: number;
  /** Only upgrades on this path are accepted; unset accepts any path (IoT Hub's is `/$iothub/websocket`). */
  path?: string;
  /** wss: uses mqtt.tls.certFile/keyFile. */
  tls: boolean;
}

export interface RateLimitConfig {
  /** Sustained publishes per second per device; 0 turns the limit off. */
  messagesPerS: number;
  /** Publishes a device may send at once above the sustained rate. */
  burst: number;
  /** `delay`: hold the PUBACK until the device is within its rate (back-pressure, nothing lost); `disconnect`: drop the connection unacknowledged (the device resends later). */
  onExceed: 'delay' | 'disconnect';
}

export interface MqttListenerConfig {
  /** The plain-TCP listener (`mqtt://`); off for a TLS-only collector. */
  enabled: boolean;
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Largest accepted PUBLISH payload. */
  maxPayloadBytes: number;
  /** Connected clients across all listeners; more are refused with CONNACK 3 (server unavailable). */
  maxConnections: number;
  /** A connection that has not completed CONNECT (TLS handshake, WebSocket upgrade, CONNACK sent) by then is closed. */
  connectTimeoutMs: number;
  /** Connections still without CONNACK, across all listeners; a new one beyond it closes the oldest pending one. */
  maxPendingConnections: number;
  rateLimit: RateLimitConfig;
  tls: TlsListenerConfig;
  ws: WsListenerConfig;
}

export interface CollectorAuthConfig {
  /** `registry`: only devices in the registry, with a valid SAS token, password or client certificate. `open`: any client id (loopback only). */
  mode: 'registry' | 'open';
  /** Defaults to <stateDir>/devices.db. */
  registryPath?: string;
  /** How often the running collector looks for revocations and expired SAS tokens. */
  revocationPollMs: number;
  /** The IoT Hub host name devices put in their connection strings (`HostName=`) and SAS `sr`. */
  hostName: string;
}

export interface SpoolConfig {
  /** Defaults to <stateDir>/spool.db. */
  path?: string;
  maxBytes: number;
  /** `block`: when full, PUBACKs wait until sinks drain (back-pressure); nothing is dropped. */
  whenFull: WhenFull;
  synchronous: SynchronousMode;
  /**
   * With synchronous `full`: fsync the WAL on the thread pool (collector/wal-sync.ts) instead of
   * inside each commit. Same promise (PUBACK after the fsync), but the broker keeps working meanwhile.
   */
  asyncFsync: boolean;
  /** Group commit: accepted publishes wait at most this long for their shared commit (0: one event-loop turn). */
  commitIntervalMs: number;
  commitMaxMessages: number;
}

export interface RunnerConfig {
  batchMaxMessages: number;
  batchMaxBytes: number;
  /** A partial batch is sent after this long. */
  flushIntervalMs: number;
  backoff: BackoffConfig;
  /** At shutdown, how long to wait for a sink write in flight (then again after closing the sink). */
  stopGraceMs: number;
}

export interface CollectorConfig {
  siteId: string;
  stateDir: string;
  mqtt: MqttListenerConfig;
  auth: CollectorAuthConfig;
  spool: SpoolConfig;
  runner: RunnerConfig;
  sinks: { http: HttpIngestSinkConfig; eventHubs: EventHubsSinkConfig; file: FileSinkConfig };
  /** Device twins: local store, IoT Hub twin protocol, cloud desired feed (collector/twin/). */
  twin: CollectorTwinConfig;
  /** Site heartbeat to the cloud (spool depth, sinks, devices), over twin.cloudUrl or sinks.http (collector/twin/site-status.ts). */
  siteStatus: SiteStatusConfig;
  /** Model rollout: cache of promoted models, served to devices over MQTT (collector/models/). */
  models: CollectorModelsConfig;
  admin: AdminHttpConfig;
  log: Partial<LogConfig>;
}

export const collectorDefaults: CollectorConfig = {
  siteId: 'site-1',
  stateDir: join(process.env['EDGETWIN_HOME'] ?? 'var', 'collector'),
  mqtt: {
    enabled: true,
    host: '127.0.0.1',
    port: 1883,
    maxPayloadBytes: 1024 * 1024,
    maxConnections: 10_000,
    connectTimeoutMs: 10_000,
    maxPendingConnections: 1000,
    rateLimit: { messagesPerS: 1000, burst: 2000, onExceed: 'delay' },
    tls: { enabled: false, host: '127.0.0.1', port: 8883, clientCerts: 'none' },
    ws: { enabled: false, host: '127.0.0.1', port: 8080, tls: false },
  },
  // Open is safe only on loopback; checkCollectorConfig refuses it anywhere else.
  auth: { mode: 'open', revocationPollMs: 500, hostName: 'edgetwin.local' },
  spool: {
    maxBytes: 1024 * 1024 * 1024,
    whenFull: 'block',
    // A PUBACK promises the message is on disk: every commit is fsynced.
    synchronous: 'full',
    asyncFsync: true,
    commitIntervalMs: 2,
    commitMaxMessages: 1000,
  },
  runner: { batchMaxMessages: 500, batchMaxBytes: 4 * 1024 * 1024, flushIntervalMs: 50, backoff: { initialMs: 200, maxMs: 15_000 }, stopGraceMs: 5000 },
  sinks: { http: httpIngestSinkDefaults, eventHubs: eventHubsSinkDefaults, file: fileSinkDefaults },
  twin: collectorTwinDefaults,
  siteStatus: siteStatusDefaults,
  models: collectorModelsDefaults,
  admin: { enabled: true, host: '127.0.0.1', port: 0 },
  log: {},
};

const listenerProps = {
  enabled: { type: 'boolean' },
  host: { type: 'string', minLength: 1 },
  port: { type: 'integer', minimum: 0, maximum: 65535 },
} as const;

const backoffSchema = {
  type: 'object',
  additionalProperties: false,
  properties: { initialMs: { type: 'integer', minimum: 1 }, maxMs: { type: 'integer', minimum: 1 } },
} as const;

export const collectorConfigSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['siteId', 'stateDir', 'mqtt', 'spool', 'runner', 'sinks', 'admin'],
  properties: {
    siteId: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' },
    stateDir: { type: 'string', minLength: 1 },
    mqtt: {
      type: 'object',
      additionalProperties: false,
      properties: {
        ...listenerProps,
        maxPayloadBytes: { type: 'integer', minimum: 1024, maximum: 268435455 },
        maxConnections: { type: 'integer', minimum: 1 },
        connectTimeoutMs: { type: 'integer', minimum: 100, maximum: 600_000 },
        maxPendingConnections: { type: 'integer', minimum: 1 },
        rateLimit: {
          type: 'object',
          additionalProperties: false,
          properties: {
            messagesPerS: { type: 'number', minimum: 0 },
            burst: { type: 'integer', minimum: 1 },
            onExceed: { enum: ['delay', 'disconnect'] },
          },
        },
        tls: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ...listenerProps,
            certFile: { type: 'string', minLength: 1 },
            keyFile: { type: 'string', minLength: 1 },
            caFile: { type: 'string', minLength: 1 },
            clientCerts: { enum: ['none', 'request', 'require'] },
          },
        },
        ws: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ...listenerProps,
            path: { type: 'string', pattern: '^/' },
            tls: { type: 'boolean' },
          },
        },
      },
    },
    auth: {
      type: 'object',
      additionalProperties: false,
      properties: {
        mode: { enum: ['registry', 'open'] },
        registryPath: { type: 'string', minLength: 1 },
        revocationPollMs: { type: 'integer', minimum: 50, maximum: 60000 },
        hostName: { type: 'string', minLength: 1 },
      },
    },
    spool: {
      type: 'object',
      additionalProperties: false,
      properties: {
        path: { type: 'string', minLength: 1 },
        maxBytes: { type: 'integer', minimum: 65536 },
        whenFull: { enum: ['drop_oldest', 'block'] },
        synchronous: { enum: ['full', 'normal'] },
        asyncFsync: { type: 'boolean' },
        commitIntervalMs: { type: 'integer', minimum: 0, maximum: 1000 },
        commitMaxMessages: { type: 'integer', minimum: 1 },
      },
    },
    runner: {
      type: 'object',
      additionalProperties: false,
      properties: {
        batchMaxMessages: { type: 'integer', minimum: 1 },
        batchMaxBytes: { type: 'integer', minimum: 1024 },
        flushIntervalMs: { type: 'integer', minimum: 0 },
        backoff: backoffSchema,
        stopGraceMs: { type: 'integer', minimum: 0, maximum: 60000 },
      },
    },
    sinks: {
      type: 'object',
      additionalProperties: false,
      properties: { http: httpIngestSinkConfigSchema, eventHubs: eventHubsSinkConfigSchema, file: fileSinkConfigSchema },
    },
    twin: collectorTwinConfigSchema,
    siteStatus: siteStatusConfigSchema,
    models: collectorModelsConfigSchema,
    admin: adminHttpConfigSchema,
    log: logConfigSchema,
  },
} as const;

export const collectorEnv: EnvMap = {
  EDGETWIN_SITE_ID: 'siteId',
  EDGETWIN_COLLECTOR_STATE_DIR: 'stateDir',
  EDGETWIN_CLOUD_URL: 'sinks.http.url',
  EDGETWIN_CLOUD_TOKEN: 'sinks.http.token',
  EDGETWIN_COLLECTOR_AUTH_MODE: 'auth.mode',
  EDGETWIN_EVENTHUBS_CONNECTION_STRING: 'sinks.eventHubs.connectionString',
  EDGETWIN_EVENTHUBS_NAMESPACE: 'sinks.eventHubs.fullyQualifiedNamespace',
  EDGETWIN_EVENTHUBS_NAME: 'sinks.eventHubs.eventHubName',
};

export function loadCollectorConfig(file?: string, overrides?: unknown, env: NodeJS.ProcessEnv = process.env): CollectorConfig {
  const cfg = loadConfig<CollectorConfig>({ component: 'collector', schema: collectorConfigSchema, defaults: collectorDefaults, file, overrides, env, envMap: collectorEnv });
  checkCollectorConfig(cfg);
  return cfg;
}

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|localhost)$/i;

function configError(key: string, msg: string): EdgetwinError {
  return new EdgetwinError(ErrorCodes.CONFIG, `collector config: key "${key}" ${msg}`, { details: { key } });
}

/** Rules that span keys, which a JSON Schema cannot say; run once at start-up. */
export function checkCollectorConfig(cfg: CollectorConfig): void {
  const m = cfg.mqtt;
  const listeners: [string, { enabled: boolean; host: string }][] = [['mqtt.host', m], ['mqtt.tls.host', m.tls], ['mqtt.ws.host', m.ws]];
  const enabled = listeners.filter(([, l]) => l.enabled);
  if (enabled.length === 0) throw configError('mqtt.enabled', 'must be true when mqtt.tls.enabled and mqtt.ws.enabled are false: the collector needs a listener');
  if (cfg.auth.mode === 'open') {
    const exposed = enabled.find(([, l]) => !LOOPBACK.test(l.host));
    if (exposed) throw configError('auth.mode', `is "open", which is only allowed when every listener is on loopback, but ${exposed[0]} is "${exposed[1].host}"; use auth.mode "registry"`);
  }
  if (m.tls.enabled || (m.ws.enabled && m.ws.tls)) {
    if (!m.tls.certFile) throw configError('mqtt.tls.certFile', 'is required for TLS listeners');
    if (!m.tls.keyFile) throw configError('mqtt.tls.keyFile', 'is required for TLS listeners');
  }
  if (m.tls.clientCerts !== 'none' && !m.tls.caFile) throw configError('mqtt.tls.caFile', `is required when mqtt.tls.clientCerts is "${m.tls.clientCerts}"`);
  if (m.rateLimit.messagesPerS > 0 && m.rateLimit.burst < 1) throw configError('mqtt.rateLimit.burst', 'must be >= 1');
  checkEventHubsSinkConfig(cfg.sinks.eventHubs, 'sinks.eventHubs', configError);
}
