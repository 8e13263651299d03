/**
 * Assets (section `assets` of the agent's config): a machine on the device's side — an engine, a
 * pump — whose metrics a failure model reads together. Each asset says which metric feeds which
 * model feature and what one step is; `discover` finds assets by metric name instead of listing
 * them (a replayed fleet of 100 engines).
 */
import Type, { type Static } from 'typebox';
import { configDefaults, Section } from '../../common/config.js';
import { ASSET_PATTERN, METRIC_PATTERN } from '../../common/wire/record.js';

/**
 * What one step of an asset is. `timestamp`: the asset's readings that share a sample time (a
 * C-MAPSS cycle, a PLC scan); the step is complete once every feature has a value for that time,
 * or when a later time arrives (missing features then keep their last value). `interval`: the
 * mean of each feature over `ms` (buckets of the readings' own time), complete when a reading of
 * a later bucket arrives.
 */
export const stepConfigSchema = Section(
  {
    by: Type.Enum(['timestamp', 'interval'], { default: 'timestamp' }),
    /** The bucket length of `by: interval` (required there). */
    ms: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { if: { properties: { by: { const: 'interval' } }, required: ['by'] }, then: { required: ['ms'] } },
);
export type StepConfig = Static<typeof stepConfigSchema>;

export const assetConfigSchema = Section({
  id: Type.String({ pattern: ASSET_PATTERN }),
  /** Model feature name → metric; features not listed read `<id>.<feature>`. */
  metrics: Type.Optional(Type.Record(Type.String(), Type.String({ pattern: METRIC_PATTERN }))),
  /** Default: by timestamp. */
  step: Type.Optional(stepConfigSchema),
});
export type AssetConfig = Static<typeof assetConfigSchema>;

export const assetsConfigSchema = Section({
  list: Type.Array(assetConfigSchema, { default: [] }),
  /** Assets found by metric name: `pattern` is a regular expression whose group 1 is the asset id and group 2 the feature. */
  discover: Type.Optional(Section({ pattern: Type.String({ minLength: 1 }), step: Type.Optional(stepConfigSchema) })),
  /** Assets tracked at most (each keeps one window: window × features floats); readings of further ones are not predicted (counted). */
  maxAssets: Type.Integer({ minimum: 1, default: 1000 }),
});
export type AssetsConfig = Static<typeof assetsConfigSchema>;
export const assetsDefaults: AssetsConfig = configDefaults(assetsConfigSchema);
