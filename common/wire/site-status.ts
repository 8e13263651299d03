/**
 * The site heartbeat: the body of `PUT /v1/sites/{site}/status`, which a collector sends every
 * `siteStatus.intervalMs` (collector/heartbeat/) and the cloud keeps per site (cloud/sites/).
 * One definition for both sides; docs/wire-contract.md, "Site heartbeat".
 *
 * Additional fields are allowed (a newer collector may send more); the cloud stores only these.
 */
import Type, { type Static } from 'typebox';

const count = Type.Integer({ minimum: 0 });

export const siteStatusReportSchema = Type.Object({
  v: Type.Literal(1),
  at: Type.String({ minLength: 1, maxLength: 40, description: "the collector's clock when it took the figures (ISO 8601)" }),
  collectorVersion: Type.String({ minLength: 1, maxLength: 64 }),
  intervalMs: Type.Integer({
    minimum: 100,
    maximum: 3_600_000,
    description: 'how often the collector reports; staleness is judged from it',
  }),
  /** Optional in the contract (older collectors); this collector always sends it. */
  uptimeS: Type.Optional(count),
  spool: Type.Object({ rows: count, bytes: count, maxBytes: Type.Optional(count) }),
  devices: Type.Object({ connected: count }),
  /** Per sink (`http`, `eventHubs`, `file`): whether its last write succeeded and how many spool rows it has yet to send. */
  sinks: Type.Record(
    Type.String(),
    Type.Object({ ok: Type.Boolean(), lagRows: count, lastError: Type.Optional(Type.String({ maxLength: 500 })) }),
    { maxProperties: 16, propertyNames: { pattern: '^[A-Za-z0-9._-]{1,64}$' } },
  ),
  twin: Type.Optional(Type.Object({ feed: Type.Enum(['ok', 'failing', 'off']) })),
});
export type SiteStatusReport = Static<typeof siteStatusReportSchema>;
