import { join } from 'node:path';
import { loadConfig, type EnvMap } from '../common/config.js';
import { logConfigSchema, type LogConfig } from '../common/log.js';
import { DEVICE_ID_PATTERN } from '../common/record.js';
import type { SynchronousMode } from '../common/sqlite.js';
import type { WhenFull } from '../common/outbox.js';
import { simulatorConfigSchema, simulatorDefaults, type SimulatorConfig } from './sources/simulator.js';
import { mqttUplinkConfigSchema, mqttUplinkDefaults, type MqttUplinkConfig } from './mqtt-uplink.js';

export interface AgentOutboxConfig {
  /** Defaults to <stateDir>/outbox.db. */
  path?: string;
  maxBytes: number;
  whenFull: WhenFull;
  synchronous: SynchronousMode;
  /** Readings wait at most this long in memory before their transaction commits. */
  flushIntervalMs: number;
  /** A flush happens early once this many readings are pending. */
  flushMaxReadings: number;
}

export interface AgentConfig {
  deviceId: string;
  stateDir: string;
  outbox: AgentOutboxConfig;
  uplink: MqttUplinkConfig;
  sources: { simulator: SimulatorConfig };
  log: Partial<LogConfig>;
}

export const agentOutboxDefaults: AgentOutboxConfig = {
  maxBytes: 256 * 1024 * 1024,
  whenFull: 'drop_oldest',
  // Process crashes lose nothing in WAL+NORMAL; the boot epoch is written with FULL so a power
  // cut can never reuse an identity (see docs/architecture.md).
  synchronous: 'normal',
  flushIntervalMs: 50,
  flushMaxReadings: 5000,
};

export const agentDefaults: AgentConfig = {
  deviceId: 'device-1',
  stateDir: join(process.env['EDGETWIN_HOME'] ?? 'var', 'agent'),
  outbox: agentOutboxDefaults,
  uplink: mqttUplinkDefaults,
  sources: { simulator: simulatorDefaults },
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
        maxBytes: { type: 'integer', minimum: 65536 },
        whenFull: { enum: ['drop_oldest', 'block'] },
        synchronous: { enum: ['full', 'normal'] },
        flushIntervalMs: { type: 'integer', minimum: 1, maximum: 60000 },
        flushMaxReadings: { type: 'integer', minimum: 1, maximum: 1000000 },
      },
    },
    uplink: mqttUplinkConfigSchema,
    sources: {
      type: 'object',
      additionalProperties: false,
      properties: { simulator: simulatorConfigSchema },
    },
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
};

export function loadAgentConfig(file?: string, overrides?: unknown, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  return loadConfig<AgentConfig>({ component: 'agent', schema: agentConfigSchema, defaults: agentDefaults, file, overrides, env, envMap: agentEnv });
}
