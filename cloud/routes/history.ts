/** History from the lakehouse (telemetry, anomalies, quarantine) and batch data quality. */
import type { FastifyInstance } from 'fastify';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import { requireSite, scopedSite } from '../auth/authenticator.js';
import { qualityReport } from '../ingest/quality-report.js';
import type { ServerContext } from '../server.js';
import { deviceParam, limitParam, parseBucket, siteParam, timeParam, timeRange } from './params.js';

const DAY = 86_400_000;
const rangeProps = { from: timeParam('start, inclusive (default: to minus one day)'), to: timeParam('end, exclusive (default: now)') };

export function registerHistoryRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { lake, twins } = ctx;

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
        params: { type: 'object', required: ['id'], properties: { id: deviceParam } },
        querystring: {
          type: 'object',
          properties: {
            metric: { type: 'string', minLength: 1, maxLength: 128 },
            ...rangeProps,
            bucket: { type: 'string', maxLength: 10, description: 'raw, or <n><s|m|h|d> such as 10s, 1m, 15m, 1h, 1d' },
            limit: limitParam(10_000, 100_000),
          },
        },
        'x-responses': { 200: { description: '`{device, metric, bucket, from, to, source, points, truncated}`' } },
      },
    },
    async (req) => {
      const id = (req.params as { id: string }).id;
      const q = req.query as { metric?: string; from?: string; to?: string; bucket?: string; limit: number };
      const site = twins.siteOf(id);
      if (site === undefined) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no twin for device ${id}`);
      requireSite(req.principal, site);
      const bucketMs = parseBucket(q.bucket);
      const { from, to } = timeRange(q, DAY, bucketMs === undefined ? 31 * DAY : 3660 * DAY);
      const r = await lake.query.telemetry({ device: id, site, metric: q.metric, from, to, bucketMs, limit: q.limit });
      return { device: id, metric: q.metric ?? null, bucket: q.bucket ?? 'raw', from: new Date(from).toISOString(), to: new Date(to).toISOString(), ...r };
    },
  );

  app.get(
    '/v1/anomalies',
    {
      config: { action: 'read' },
      schema: {
        summary: 'Anomaly events (readings the device flagged as alerts), newest first',
        tags: ['history'],
        querystring: { type: 'object', properties: { site: siteParam, device: deviceParam, ...rangeProps, limit: limitParam(1000, 10_000) } },
      },
    },
    async (req) => {
      const q = req.query as { site?: string; device?: string; from?: string; to?: string; limit: number };
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
        summary: 'Quarantined rows (failed schema, null, range or timestamp expectations), newest first',
        tags: ['quality'],
        querystring: {
          type: 'object',
          properties: { site: siteParam, device: deviceParam, reason: { enum: ['schema', 'null', 'range', 'timestamp'] }, ...rangeProps, limit: limitParam(1000, 10_000) },
        },
      },
    },
    async (req) => {
      const q = req.query as { site?: string; device?: string; reason?: string; from?: string; to?: string; limit: number };
      const { from, to } = timeRange(q, DAY, 366 * DAY);
      const items = await lake.query.quarantine({ site: scopedSite(req.principal, q.site), device: q.device, reason: q.reason, from, to, limit: q.limit });
      return { items };
    },
  );

  app.get(
    '/v1/quality',
    {
      config: { action: 'read' },
      schema: {
        summary: 'Data-quality score per ingested batch, and over the range',
        tags: ['quality'],
        querystring: { type: 'object', properties: { site: siteParam, ...rangeProps, limit: limitParam(100, 1000), batchId: { type: 'string', maxLength: 128 } } },
        'x-responses': { 200: { description: '`{summary: {batches, readings, passed, quarantined, rejected, duplicates, score}, items: [batch]}`' } },
      },
    },
    async (req) => {
      const q = req.query as { site?: string; from?: string; to?: string; limit: number; batchId?: string };
      const { from, to } = timeRange(q, DAY, 366 * DAY);
      return qualityReport(ctx.twins.db, { site: scopedSite(req.principal, q.site), batchId: q.batchId, from, to, limit: q.limit });
    },
  );
}
