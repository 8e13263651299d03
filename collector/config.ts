import { join } from 'node:path';
import Type, { type Static } from 'typebox';
import { adminHttpConfigSchema } from '../common/admin-http.js';
import { configDefaults, configKeyError, loadConfig, Section, type EnvMap } from '../common/config.js';
import type { EdgetwinError } from '../common/errors.js';
import { checkEventHubsConnection } from '../common/event-hubs-config.js';
import { logConfigSchema } from '../common/log.js';
import { mqttListenerConfigSchema } from './broker/config.js';
import { timestampWindowSchema } from '../common/wire/storable.js';
import { deviceLimitsSchema } from '../common/wire/limits.js';
import { SITE_ID_PATTERN } from '../common/wire/ingest-envelope.js';
import { collectorC2dConfigSchema } from './c2d/collector-c2d.js';
import { siteStatusConfigSchema } from './heartbeat/site-status-reporter.js';
import { collectorModelsConfigSchema } from './model-cache/config.js';
import { eventHubsSinkConfigSchema } from './sinks/event-hubs.js';
import { fileSinkConfigSchema } from './sinks/file.js';
import { httpIngestSinkConfigSchema } from './sinks/http-ingest.js';
import { runnerConfigSchema } from './sinks/runner.js';
import { collectorTwinConfigSchema } from './twin/collector-twin.js';

const collectorAuthConfigSchema = Section({
  /** `registry`: only devices in the registry, with a valid SAS token, password or client certificate. `open`: any client id (loopback only). */
  // Open is safe only on loopback; checkCollectorConfig refuses it anywhere else.
  mode: Type.Enum(['registry', 'open'], { default: 'open' }),
  /** Defaults to <stateDir>/devices.db. */
  registryPath: Type.Optional(Type.String({ minLength: 1 })),
  /** How often the running collector looks for revocations and expired SAS tokens. */
  revocationPollMs: Type.Integer({ minimum: 50, maximum: 60000, default: 500 }),
  /** The IoT Hub host name devices put in their connection strings (`HostName=`) and SAS `sr`. */
  hostName: Type.String({ minLength: 1, default: 'edgetwin.local' }),
});
export type CollectorAuthConfig = Static<typeof collectorAuthConfigSchema>;

const spoolConfigSchema = Section({
  /** Defaults to <stateDir>/spool.db. */
  path: Type.Optional(Type.String({ minLength: 1 })),
  maxBytes: Type.Integer({ minimum: 65536, default: 1024 * 1024 * 1024 }),
  /** `block`: when full, PUBACKs wait until sinks drain (back-pressure); nothing is dropped. */
  whenFull: Type.Enum(['drop_oldest', 'block'], { default: 'block' }),
  // A PUBACK promises the message is on disk: every commit is fsynced.
  synchronous: Type.Enum(['full', 'normal'], { default: 'full' }),
  /**
   * With synchronous `full`: fsync the WAL on the thread pool (collector/spool/wal-sync.ts) instead of
   * inside each commit. Same promise (PUBACK after the fsync), but the broker keeps working meanwhile.
   */
  asyncFsync: Type.Boolean({ default: true }),
  /** Group commit: accepted publishes wait at most this long for their shared commit (0: one event-loop turn). */
  commitIntervalMs: Type.Integer({ minimum: 0, maximum: 1000, default: 2 }),
  commitMaxMessages: Type.Integer({ minimum: 1, default: 1000 }),
});
export type SpoolConfig = Static<typeof spoolConfigSchema>;

/** The collector's whole config: each section's schema lives beside the code it configures. */
export const collectorConfigSchema = Section({
  // The cloud's envelope rule (never `.`/`..`): a site id it refuses would dead-letter every batch.
  siteId: Type.String({ pattern: SITE_ID_PATTERN, default: 'site-1' }),
  stateDir: Type.String({ minLength: 1, default: join(process.env['EDGETWIN_HOME'] ?? 'var', 'collector') }),
  mqtt: mqttListenerConfigSchema,
  /** Sample times the collector accepts (common/wire/storable.ts); a payload with one outside is refused and kept in quarantine. */
  timestamps: timestampWindowSchema,
  /** Metric names per device (common/wire/limits.ts): a message naming more is refused and kept in quarantine. */
  limits: deviceLimitsSchema,
  auth: collectorAuthConfigSchema,
  spool: spoolConfigSchema,
  runner: runnerConfigSchema,
  sinks: Section({ http: httpIngestSinkConfigSchema, eventHubs: eventHubsSinkConfigSchema, file: fileSinkConfigSchema }),
  /** Device twins: local store, IoT Hub twin protocol, cloud desired feed (collector/twin/). */
  twin: collectorTwinConfigSchema,
  /** Site heartbeat to the cloud (spool depth, sinks, devices), over twin.cloudUrl or sinks.http (collector/heartbeat/site-status-reporter.ts). */
  siteStatus: siteStatusConfigSchema,
  /** Model rollout: cache of promoted models, served to devices over MQTT (collector/model-cache/). */
  models: collectorModelsConfigSchema,
  /** Cloud to device: the push channel from the cloud, direct methods, device-bound messages (collector/c2d/). */
  c2d: collectorC2dConfigSchema,
  admin: adminHttpConfigSchema,
  log: logConfigSchema,
});
export type CollectorConfig = Static<typeof collectorConfigSchema>;
export const collectorDefaults: CollectorConfig = configDefaults(collectorConfigSchema);

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
  const cfg = loadConfig({ component: 'collector', schema: collectorConfigSchema, file, overrides, env, envMap: collectorEnv });
  checkCollectorConfig(cfg);
  return cfg;
}

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|localhost)$/i;

const configError = (key: string, msg: string): EdgetwinError => configKeyError('collector', key, msg);

/** Rules that span keys, which a JSON Schema cannot say; run once at start-up. */
export function checkCollectorConfig(cfg: CollectorConfig): void {
  const m = cfg.mqtt;
  const listeners: [string, { enabled: boolean; host: string }][] = [
    ['mqtt.host', m],
    ['mqtt.tls.host', m.tls],
    ['mqtt.ws.host', m.ws],
  ];
  const enabled = listeners.filter(([, l]) => l.enabled);
  if (enabled.length === 0)
    throw configError('mqtt.enabled', 'must be true when mqtt.tls.enabled and mqtt.ws.enabled are false: the collector needs a listener');
  if (cfg.auth.mode === 'open') {
    const exposed = enabled.find(([, l]) => !LOOPBACK.test(l.host));
    if (exposed)
      throw configError(
        'auth.mode',
        `is "open", which is only allowed when every listener is on loopback, but ${exposed[0]} is "${exposed[1].host}"; use auth.mode "registry"`,
      );
  }
  if (m.tls.enabled || (m.ws.enabled && m.ws.tls)) {
    if (!m.tls.certFile) throw configError('mqtt.tls.certFile', 'is required for TLS listeners');
    if (!m.tls.keyFile) throw configError('mqtt.tls.keyFile', 'is required for TLS listeners');
  }
  if (m.tls.clientCerts !== 'none' && !m.tls.caFile)
    throw configError('mqtt.tls.caFile', `is required when mqtt.tls.clientCerts is "${m.tls.clientCerts}"`);
  if (m.rateLimit.messagesPerS > 0 && m.rateLimit.burst < 1) throw configError('mqtt.rateLimit.burst', 'must be >= 1');
  checkEventHubsConnection(cfg.sinks.eventHubs, 'sinks.eventHubs', configError);
}
