/**
 * Alert rules: what condition, about what (device, site, the platform), how bad, where to send it.
 * The same shape in config (`alerts.rules`, read-only over the API) and over `/v1/alert-rules`.
 * Each kind reads current state (cloud/alerts/conditions.ts) — alerts are state-based: an alert
 * resolves when its condition is no longer true, and a restart re-derives everything.
 */
import Type, { type Static } from 'typebox';
import { Section } from '../../common/config.js';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import { SEVERITIES } from './notify/destinations.js';
import { SITE_ID_PATTERN } from '../../common/wire/ingest-envelope.js';

export const RULE_KINDS = [
  /** A device's twin is anomalous (its latest reading of some metric carries the model's alert). */
  'device_anomaly',
  /** A device not heard from for `afterS`. */
  'device_offline',
  /** A collector's heartbeat (site status) older than `afterS` (default: 3 missed intervals). */
  'site_heartbeat_stale',
  /** A site's data-quality score (passed / readings) below `below` over `windowS`. */
  'data_quality',
  /** A site's quarantined / readings above `above` over `windowS`. */
  'quarantine_rate',
  /** The lakehouse writer failing for `afterS`. */
  'lake_writer_failing',
  /** The Event Hubs consumer behind the newest enqueued event by more than `aboveS`. */
  'eventhubs_lag',
  /** The API's p99 latency over `windowS` above `aboveMs` (non-streaming routes). */
  'api_p99',
  /** A signal another part of the cloud publishes (cloud/alerts/signals.ts): `signal` names it (`rul_low`, `model_drift`). */
  'signal',
] as const;
export type RuleKind = (typeof RULE_KINDS)[number];

export const ruleSchema = Section({
  id: Type.String({ pattern: '^[A-Za-z0-9._-]{1,64}$' }),
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  kind: Type.Enum(RULE_KINDS),
  severity: Type.Optional(Type.Enum(SEVERITIES)),
  enabled: Type.Optional(Type.Boolean()),
  /** Only this site's devices / this site. */
  site: Type.Optional(Type.String({ pattern: SITE_ID_PATTERN })),
  /** The condition must hold this long before the alert fires (pending until then). */
  forS: Type.Optional(Type.Number({ minimum: 0, maximum: 86_400 })),
  /** Destination ids; absent or empty: every destination. */
  destinations: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { maxItems: 20 })),
  afterS: Type.Optional(Type.Number({ minimum: 1 })),
  windowS: Type.Optional(Type.Number({ minimum: 10, maximum: 7 * 86_400 })),
  below: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
  above: Type.Optional(Type.Number({ minimum: 0 })),
  aboveS: Type.Optional(Type.Number({ minimum: 0 })),
  aboveMs: Type.Optional(Type.Number({ minimum: 0 })),
  /** Ignore windows with fewer readings / requests than this (one bad reading of three is not a quality problem). */
  minCount: Type.Optional(Type.Integer({ minimum: 1 })),
  signal: Type.Optional(Type.String({ pattern: '^[a-z0-9_]{1,64}$' })),
});

export type RuleSpec = Static<typeof ruleSchema>;

/** A rule with every default applied. */
export interface Rule extends RuleSpec {
  name: string;
  severity: (typeof SEVERITIES)[number];
  enabled: boolean;
  forS: number;
  destinations: string[];
  origin: 'config' | 'api';
}

const DEFAULTS: Partial<Record<RuleKind, Partial<RuleSpec>>> = {
  device_offline: { afterS: 300 },
  data_quality: { below: 0.95, windowS: 900, minCount: 100 },
  quarantine_rate: { above: 0.05, windowS: 900, minCount: 100 },
  lake_writer_failing: { afterS: 300 },
  eventhubs_lag: { aboveS: 30 },
  api_p99: { aboveMs: 200, windowS: 300, minCount: 100 },
};

const NAMES: Record<RuleKind, string> = {
  device_anomaly: 'Device anomaly',
  device_offline: 'Device offline',
  site_heartbeat_stale: 'Site heartbeat stale',
  data_quality: 'Data quality below target',
  quarantine_rate: 'Quarantine rate high',
  lake_writer_failing: 'Lakehouse writer failing',
  eventhubs_lag: 'Event Hubs consumer lag',
  api_p99: 'API p99 latency',
  signal: 'Signal',
};

const bad = (id: string, msg: string): EdgetwinError =>
  new EdgetwinError(ErrorCodes.BAD_REQUEST, `alert rule ${id}: ${msg}`, { details: { rule: id } });

/** Applies defaults and checks what the schema cannot (which parameters each kind needs). */
export function normalizeRule(spec: RuleSpec, origin: Rule['origin'], destinationIds: readonly string[]): Rule {
  const r = { ...DEFAULTS[spec.kind], ...spec };
  if (r.kind === 'signal' && !r.signal) throw bad(r.id, 'kind "signal" needs `signal` (e.g. rul_low, model_drift)');
  if (r.kind !== 'signal' && r.signal) throw bad(r.id, '`signal` is only for kind "signal"');
  if (r.kind === 'data_quality' && r.below === undefined) throw bad(r.id, 'needs `below`');
  for (const d of r.destinations ?? []) if (!destinationIds.includes(d)) throw bad(r.id, `unknown destination "${d}"`);
  return {
    ...r,
    name: r.name ?? (r.kind === 'signal' ? `Signal ${r.signal}` : NAMES[r.kind]),
    severity: r.severity ?? (r.kind === 'device_anomaly' || r.kind === 'signal' ? 'warning' : 'critical'),
    enabled: r.enabled ?? true,
    forS: r.forS ?? 0,
    destinations: r.destinations ?? [],
    origin,
  };
}
