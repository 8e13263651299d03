import { join } from 'node:path';
import { adminHttpConfigSchema, type AdminHttpConfig } from '../common/admin-http.js';
import type { BackoffConfig } from '../common/backoff.js';
import { loadConfig, type EnvMap } from '../common/config.js';
import { logConfigSchema, type LogConfig } from '../common/log.js';
import { DEVICE_ID_PATTERN } from '../common/record.js';
import type { SynchronousMode } from '../common/sqlite.js';
import type { WhenFull } from '../common/outbox.js';
import { csvReplayConfigSchema, csvReplayDefaults, type CsvReplayConfig } from './sources/csv-replay.js';
import { httpReadingsConfigSchema, httpReadingsDefaults, type HttpReadingsConfig } from './sources/http-readings.js';
import { jsonLinesConfigSchema, jsonLinesDefaults, type JsonLinesConfig } from './sources/json-lines.js';
import { modbusTcpConfigSchema, modbusTcpDefaults, type ModbusTcpConfig } from './sources/modbus-tcp.js';
import { simulatorConfigSchema, simulatorDefaults, type SimulatorConfig } from './sources/simulator.js';
import { mqttUplinkConfigSchema, mqttUplinkDefaults, type MqttUplinkConfig } from './mqtt-uplink.js';
import { agentTwinConfigSchema, agentTwinDefaults, type AgentTwinConfig } from './twin/agent-twin.js';
import { agentScoringConfigSchema, agentScoringDefaults, type AgentScoringConfig } from './models/scoring-config.js';

export interface AgentOutboxConfig {
  /** Defaults to <stateDir>/outbox.db. */
  path?: string;
  /** Cap on the outbox on disk: database file plus WAL (see docs/architecture.md for the margin). */
  maxBytes: number;
  /** Readings older than this (since their commit) are dropped and counted; 0: never. */
  maxAgeMs: number;
  whenFull: WhenFull;
  synchronous: SynchronousMode;
  /** Readings wait at most this long in memory before their transaction commits. */
  flushIntervalMs: number;
  /** A flush happens early once this many readings are pending. */
  flushMaxReadings: number;
  /**
   * Readings held in memory while commits wait (whenFull=block on a full outbox); past this,
   * new readings are dropped and counted, and sources that can wait (replay, stdin, HTTP) wait.
   */
  memoryMaxReadings: number;
}

export interface AgentSourcesConfig {
  /** Restart backoff of a failed source. */
  backoff: BackoffConfig;
  simulator: SimulatorConfig;
  csvReplay: CsvReplayConfig;
  jsonLines: JsonLinesConfig;
  modbusTcp: ModbusTcpConfig;
  http: HttpReadingsConfig;
}

export interface AgentConfig {
  deviceId: string;
  stateDir: string;
  outbox: AgentOutboxConfig;
  uplink: MqttUplinkConfig;
  sources: AgentSourcesConfig;
  /** `/metrics` and `/healthz` on localhost. */
  admin: AdminHttpConfig;
  /** Device twin: desired properties applied live, reported properties (agent/twin/). */
  twin: AgentTwinConfig;
  /** Anomaly scoring on the device and model rollout (agent/scoring/, agent/models/). */
  scoring: AgentScoringConfig;
  log: Partial<LogConfig>;
}

export const agentOutboxDefaults: AgentOutboxConfig = {
  maxBytes: 256 * 1024 * 1024,
  whenFull: 'drop_oldest',
  // Process crashes lose nothing in WAL+NORMAL; the boot epoch is written with FULL so a power
  // cut can never reuse an identity (see docs/architecture.md).
  synchronous: 'normal',
  maxAgeMs: 7 * 86_400_000,
  flushIntervalMs: 50,
  flushMaxReadings: 5000,
  memoryMaxReadings: 100_000,
};

export const agentSourcesDefaults: AgentSourcesConfig = {
  backoff: { initialMs: 1000, maxMs: 60_000 },
  simulator: simulatorDefaults,
  csvReplay: csvReplayDefaults,
  jsonLines: jsonLinesDefaults,
  modbusTcp: modbusTcpDefaults,
  http: httpReadingsDefaults,
};

export const agentDefaults: AgentConfig = {
  deviceId: 'device-1',
  stateDir: join(process.env['EDGETWIN_HOME'] ?? 'var', 'agent'),
  outbox: agentOutboxDefaults,
  uplink: mqttUplinkDefaults,
  sources: agentSourcesDefaults,
  admin: { enabled: true, host: '127.0.0.1', port: 0 },
  twin: agentTwinDefaults,
  scoring: agentScoringDefaults,
  log: {},
};

export const agentConfigSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['deviceId', 'stateDir', 'outbox', 'uplink', 'sources'],
  properties: {
    deviceId: { type: 'string', pattern: DEVICE_ID_PATTERN },
    stateDir: { type: 'string', minLength: 1 },
    outbox: {
      type: 'object',
      additionalProperties: false,
      properties: {
        path: { type: 'string', minLength: 1 },
        maxBytes: { type: 'integer', minimum: 262144 },
        maxAgeMs: { type: 'integer', minimum: 0 },
        whenFull: { enum: ['drop_oldest', 'block'] },
        synchronous: { enum: ['full', 'normal'] },
        flushIntervalMs: { type: 'integer', minimum: 1, maximum: 60000 },
        flushMaxReadings: { type: 'integer', minimum: 1, maximum: 1000000 },
        memoryMaxReadings: { type: 'integer', minimum: 1000 },
      },
    },
    uplink: mqttUplinkConfigSchema,
    sources: {
      type: 'object',
      additionalProperties: false,
      properties: {
        backoff: {
          type: 'object',
          additionalProperties: false,
          properties: { initialMs: { type: 'integer', minimum: 1 }, maxMs: { type: 'integer', minimum: 1 } },
        },
        simulator: simulatorConfigSchema,
        csvReplay: csvReplayConfigSchema,
        jsonLines: jsonLinesConfigSchema,
        modbusTcp: modbusTcpConfigSchema,
        http: httpReadingsConfigSchema,
      },
    },
    admin: adminHttpConfigSchema,
    twin: agentTwinConfigSchema,
    scoring: agentScoringConfigSchema,
    log: logConfigSchema,
  },
} as const;

/** Secrets and per-device values that deployments set from the environment. */
export const agentEnv: EnvMap = {
  EDGETWIN_DEVICE_ID: 'deviceId',
  EDGETWIN_AGENT_STATE_DIR: 'stateDir',
  EDGETWIN_UPLINK_URL: 'uplink.url',
  EDGETWIN_UPLINK_USERNAME: 'uplink.username',
  EDGETWIN_UPLINK_PASSWORD: 'uplink.password',
  EDGETWIN_UPLINK_SAS_KEY: 'uplink.sasKey',
  EDGETWIN_UPLINK_SAS_KEY_FILE: 'uplink.sasKeyFile',
  EDGETWIN_MODEL_PUBLIC_KEY_FILE: 'scoring.rollout.publicKeyFile',
};

export function loadAgentConfig(file?: string, overrides?: unknown, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  return loadConfig<AgentConfig>({ component: 'agent', schema: agentConfigSchema, defaults: agentDefaults, file, overrides, env, envMap: agentEnv });
}
