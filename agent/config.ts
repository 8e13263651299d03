import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import Type, { type Static } from 'typebox';
import { adminHttpConfigSchema } from '../common/admin-http.js';
import { backoffConfigSchema } from '../common/backoff.js';
import { configDefaults, loadConfig, Section, type EnvMap } from '../common/config.js';
import { timestampWindowSchema } from '../common/wire/storable.js';
import { deviceLimitsSchema } from '../common/wire/limits.js';
import { logConfigSchema } from '../common/log.js';
import { DEVICE_ID_PATTERN } from '../common/wire/record.js';
import { csvReplayConfigSchema } from './sources/csv-replay.js';
import { httpReadingsConfigSchema } from './sources/http-readings.js';
import { jsonLinesConfigSchema } from './sources/json-lines.js';
import { modbusTcpConfigSchema } from './sources/modbus-tcp.js';
import { simulatorConfigSchema } from './sources/simulator.js';
import { mqttUplinkConfigSchema } from './uplink/mqtt-uplink.js';
import { agentTwinConfigSchema } from './twin/agent-twin.js';
import { agentScoringConfigSchema } from './rollout/config.js';
import { assetsConfigSchema } from './assets/config.js';
import { failureConfigSchema } from './failure/config.js';
import { driftConfigSchema } from './drift/config.js';
import { cmapssReplayConfigSchema } from './sources/cmapss-replay.js';

/**
 * The default device id: the host name, made a valid id, plus the first 8 hex digits of
 * /etc/machine-id when there is one. Device ids are global (a second site's device with the same
 * id is refused), and fresh installs share host names ("raspberrypi", "localhost"), so a fixed
 * default or the bare host name would make default installs collide.
 */
export function defaultDeviceId(host = hostname(), machineIdFile = '/etc/machine-id'): string {
  const base =
    host
      .toLowerCase()
      .replace(/[^a-z0-9._-]+/g, '-')
      .replace(/^[-.]+|[-.]+$/g, '')
      .slice(0, 100) || 'edgetwin-agent';
  let machine = '';
  try {
    machine = /^[0-9a-f]{8}/.exec(readFileSync(machineIdFile, 'utf8').trim())?.[0] ?? '';
  } catch {
    // no machine id (some containers): the host name alone
  }
  return machine ? `${base}-${machine}` : base;
}

const agentOutboxConfigSchema = Section({
  /** Defaults to <stateDir>/outbox.db. */
  path: Type.Optional(Type.String({ minLength: 1 })),
  /** Cap on the outbox on disk: database file plus WAL (see docs/architecture.md for the margin). */
  maxBytes: Type.Integer({ minimum: 262144, default: 256 * 1024 * 1024 }),
  /** Readings older than this (since their commit) are dropped and counted; 0: never. */
  maxAgeMs: Type.Integer({ minimum: 0, default: 7 * 86_400_000 }),
  whenFull: Type.Enum(['drop_oldest', 'block'], { default: 'drop_oldest' }),
  // Process crashes lose nothing in WAL+NORMAL; the boot epoch is written with FULL so a power
  // cut can never reuse an identity (see docs/architecture.md).
  synchronous: Type.Enum(['full', 'normal'], { default: 'normal' }),
  /** Readings wait at most this long in memory before their transaction commits. */
  flushIntervalMs: Type.Integer({ minimum: 1, maximum: 60000, default: 50 }),
  /** A flush happens early once this many readings are pending. */
  flushMaxReadings: Type.Integer({ minimum: 1, maximum: 1000000, default: 5000 }),
  /**
   * Readings held in memory while commits wait (whenFull=block on a full outbox); past this,
   * new readings are dropped and counted, and sources that can wait (replay, stdin, HTTP) wait.
   */
  memoryMaxReadings: Type.Integer({ minimum: 1000, default: 100_000 }),
  /**
   * What to do with undelivered readings when `deviceId` differs from the id the state was written
   * under (agent/outbox/device-id.ts): `refuse` to start (default), `send-as-old` (deliver them
   * under the old id first, over a connection of their own), or `discard` (drop them, counted).
   */
  onDeviceIdChange: Type.Enum(['refuse', 'send-as-old', 'discard'], { default: 'refuse' }),
});
export type AgentOutboxConfig = Static<typeof agentOutboxConfigSchema>;

const agentSourcesConfigSchema = Section({
  /** Restart backoff of a failed source. */
  backoff: backoffConfigSchema({ initialMs: 1000, maxMs: 60_000 }),
  simulator: simulatorConfigSchema,
  csvReplay: csvReplayConfigSchema,
  jsonLines: jsonLinesConfigSchema,
  modbusTcp: modbusTcpConfigSchema,
  http: httpReadingsConfigSchema,
  cmapssReplay: cmapssReplayConfigSchema,
});
export type AgentSourcesConfig = Static<typeof agentSourcesConfigSchema>;

/** The agent's whole config: each section's schema lives beside the code it configures. */
export const agentConfigSchema = Section({
  deviceId: Type.String({ pattern: DEVICE_ID_PATTERN, default: defaultDeviceId() }),
  stateDir: Type.String({ minLength: 1, default: join(process.env['EDGETWIN_HOME'] ?? 'var', 'agent') }),
  outbox: agentOutboxConfigSchema,
  uplink: mqttUplinkConfigSchema,
  sources: agentSourcesConfigSchema,
  /** Sample times the agent commits (common/wire/storable.ts); a reading outside is refused (EDGETWIN_ERR_BAD_VALUE) and counted. */
  timestamps: timestampWindowSchema,
  /** Metric names this device may have (common/wire/limits.ts); a reading naming one more is refused (EDGETWIN_ERR_LIMIT_EXCEEDED) and counted. */
  limits: deviceLimitsSchema,
  /** `/metrics` and `/healthz` on localhost. */
  admin: adminHttpConfigSchema,
  /** Device twin: desired properties applied live, reported properties (agent/twin/). */
  twin: agentTwinConfigSchema,
  /** Anomaly scoring on the device and model rollout (agent/scoring/, agent/rollout/). */
  scoring: agentScoringConfigSchema,
  /** Machines whose metrics a failure model reads together, and what one step of each is (agent/assets/). */
  assets: assetsConfigSchema,
  /** The failure (remaining-useful-life) model on the assets and its rollout (agent/failure/). */
  failure: failureConfigSchema,
  /** Drift histograms of every running model, once per interval (agent/drift/). */
  drift: driftConfigSchema,
  log: logConfigSchema,
});
export type AgentConfig = Static<typeof agentConfigSchema>;
export const agentDefaults: AgentConfig = configDefaults(agentConfigSchema);

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
  EDGETWIN_FAILURE_MODEL_PUBLIC_KEY_FILE: 'failure.rollout.publicKeyFile',
};

export function loadAgentConfig(file?: string, overrides?: unknown, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  return loadConfig({ component: 'agent', schema: agentConfigSchema, file, overrides, env, envMap: agentEnv });
}
