/** History from the lakehouse (telemetry, anomalies, quarantine) and batch data quality. */
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { requireDevice, scopedSite } from '../../auth/site-policy.js';
import { qualityReport } from '../../ingest/quality-report.js';
import type { ServerContext } from '../context.js';
import { deviceIdParams, deviceParam, limitParam, parseBucket, siteParam, timeParam, timeRange, typed } from './params.js';

const DAY = 86_400_000;
/** About the most a `GET /v1/quarantine` answer holds (its rows keep refused payloads whole). */
const QUARANTINE_PAGE_MAX_BYTES = 8 * 1024 * 1024;
const rangeProps = { from: timeParam('start, inclusive (default: to minus one day)'), to: timeParam('end, exclusive (default: now)') };

export function registerHistoryRoutes(fastify: FastifyInstance, ctx: ServerContext): void {
  const { lake, twins } = ctx;
  const app = typed(fastify);

  app.get(
    '/v1/twins/:id/telemetry',
    {
      config: { action: 'read' },
      schema: {
        summary: 'Telemetry history of one device: raw readings (silver) or buckets (gold rollups)',
        tags: ['history'],
        description:
          'bucket=raw (default) returns readings; a bucket of whole minutes or hours is served from the gold rollups, other buckets are computed from silver. ' +
          'Data becomes visible once the lakehouse writer flushed it (lakehouse.flushIntervalMs).',
        params: deviceIdParams,
        querystring: Type.Object({
          metric: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
          ...rangeProps,
          bucket: Type.Optional(Type.String({ maxLength: 10, description: 'raw, or <n><s|m|h|d> such as 10s, 1m, 15m, 1h, 1d' })),
          limit: limitParam(10_000, 100_000),
        }),
        'x-responses': { 200: { description: '`{device, metric, bucket, from, to, source, points, truncated}`' } },
      },
    },
    async (req) => {
      const id = req.params.id;
      const q = req.query;
      // Another site's device is a 404, like a missing one (cloud/auth/site-policy.ts).
      const site = requireDevice(req.principal, id, await twins.siteOf(id));
      const bucketMs = parseBucket(q.bucket);
      const { from, to } = timeRange(q, DAY, bucketMs === undefined ? 31 * DAY : 3660 * DAY);
      const r = await lake.query.telemetry({ device: id, site, metric: q.metric, from, to, bucketMs, limit: q.limit });
      return {
        device: id,
        metric: q.metric ?? null,
        bucket: q.bucket ?? 'raw',
        from: new Date(from).toISOString(),
        to: new Date(to).toISOString(),
        ...r,
      };
    },
  );

  app.get(
    '/v1/anomalies',
    {
      config: { action: 'read' },
      schema: {
        summary: 'Anomaly events (readings the device flagged as alerts), newest first',
        tags: ['history'],
        querystring: Type.Object({
          site: Type.Optional(siteParam),
          device: Type.Optional(deviceParam),
          ...rangeProps,
          limit: limitParam(1000, 10_000),
        }),
      },
    },
    async (req) => {
      const q = req.query;
      const { from, to } = timeRange(q, DAY, 366 * DAY);
      const items = await lake.query.anomalies({ site: scopedSite(req.principal, q.site), device: q.device, from, to, limit: q.limit });
      return { items };
    },
  );

  app.get(
    '/v1/quarantine',
    {
      config: { action: 'read' },
      schema: {
        summary:
          'Quarantined rows, newest first: failed expectations (schema, null, range, timestamp), unstorable values (value), limits (limit), payloads a collector refused with the bytes the device sent (refused), rows the lakehouse writer could not store (lake)',
        tags: ['quality'],
        querystring: Type.Object({
          site: Type.Optional(siteParam),
          device: Type.Optional(deviceParam),
          reason: Type.Optional(Type.Enum(['schema', 'null', 'range', 'timestamp', 'value', 'limit', 'refused', 'lake'])),
          ...rangeProps,
          limit: limitParam(1000, 10_000),
        }),
        'x-responses': {
          200: {
            description:
              '`{items: [row], truncated}`: `truncated` when the rows reached about 8 MiB first (ask again with an earlier `to`)',
          },
        },
      },
    },
    async (req) => {
      const q = req.query;
      const { from, to } = timeRange(q, DAY, 366 * DAY);
      const items = await lake.query.quarantine({
        site: scopedSite(req.principal, q.site),
        device: q.device,
        reason: q.reason,
        from,
        to,
        limit: q.limit,
      });
      // Rows carry what the device sent (a refused payload whole): the answer ends at about
      // QUARANTINE_PAGE_MAX_BYTES, at least one row; `truncated` says to narrow `to` and ask again.
      let bytes = 0;
      let n = 0;
      for (; n < items.length; n++) {
        bytes += Buffer.byteLength(JSON.stringify(items[n]));
        if (n > 0 && bytes > QUARANTINE_PAGE_MAX_BYTES) break;
      }
      return { items: items.slice(0, n), truncated: n < items.length };
    },
  );

  app.get(
    '/v1/quality',
    {
      config: { action: 'read' },
      schema: {
        summary: 'Data-quality score per ingested batch, and over the range',
        tags: ['quality'],
        querystring: Type.Object({
          site: Type.Optional(siteParam),
          ...rangeProps,
          limit: limitParam(100, 1000),
          batchId: Type.Optional(Type.String({ maxLength: 128 })),
        }),
        'x-responses': {
          200: { description: '`{summary: {batches, readings, passed, quarantined, rejected, duplicates, score}, items: [batch]}`' },
        },
      },
    },
    async (req) => {
      const q = req.query;
      const { from, to } = timeRange(q, DAY, 366 * DAY);
      return qualityReport(ctx.store, { site: scopedSite(req.principal, q.site), batchId: q.batchId, from, to, limit: q.limit });
    },
  );
}
