/** Config of the cloud's alerting (`alerts.*`): rules, destinations, evaluation and delivery timing. */
import Type, { type Static } from 'typebox';
import { configDefaults, Section } from '../../common/config.js';
import { destinationSchema } from './notify/destinations.js';
import { ruleSchema, type RuleSpec } from './rules.js';

/** What a new installation watches out of the box (no destination: alerts show on the dashboard and in the API). */
export const DEFAULT_RULES: RuleSpec[] = [
  { id: 'device-anomaly', kind: 'device_anomaly' },
  { id: 'device-offline', kind: 'device_offline', afterS: 600 },
  { id: 'site-heartbeat-stale', kind: 'site_heartbeat_stale' },
  { id: 'data-quality', kind: 'data_quality', below: 0.95, windowS: 900 },
  { id: 'quarantine-rate', kind: 'quarantine_rate', above: 0.05, windowS: 900 },
  { id: 'lake-writer-failing', kind: 'lake_writer_failing', afterS: 300 },
  { id: 'eventhubs-lag', kind: 'eventhubs_lag', aboveS: 30, forS: 60 },
  { id: 'api-p99', kind: 'api_p99', aboveMs: 200, windowS: 300, forS: 300 },
  { id: 'rul-low', kind: 'signal', signal: 'rul_low' },
  { id: 'model-drift', kind: 'signal', signal: 'model_drift' },
];

export const alertsConfigSchema = Section({
  enabled: Type.Boolean({ default: true }),
  /** Rules are evaluated this often (and soon after an anomaly or a signal). */
  evaluateIntervalMs: Type.Integer({ minimum: 100, default: 15_000 }),
  rules: Type.Array(ruleSchema, { default: DEFAULT_RULES }),
  destinations: Type.Array(destinationSchema, { default: [] }),
  retry: Section({
    initialMs: Type.Integer({ minimum: 10, default: 1000 }),
    maxMs: Type.Integer({ minimum: 10, default: 300_000 }),
    maxAttempts: Type.Integer({ minimum: 1, default: 20 }),
    maxAgeMs: Type.Integer({ minimum: 1000, default: 24 * 3_600_000 }),
  }),
  /** Base URL of the dashboard for links in notifications (e.g. `https://edgetwin.example.com`); empty: no link. */
  publicUrl: Type.String({ default: '' }),
  /** Resolved alerts and delivered notifications are kept this long (dead letters until handled). */
  retentionDays: Type.Integer({ minimum: 1, default: 90 }),
});

export type AlertsConfig = Static<typeof alertsConfigSchema>;
export const alertsDefaults: AlertsConfig = configDefaults(alertsConfigSchema);
