/**
 * The change-feed rows of one ingest batch (`GET /v1/stream` on every replica), written in its
 * transaction: a `twin` change per touched device (which also drops that twin from every replica's
 * cache), an `anomaly` per alerting reading and a `reported` per changed reported patch.
 */
import type { ReportedMessage } from '../../common/wire/record.js';
import type { Tx } from '../store/store.js';
import type { AlertSeen, DeviceTouch } from './batch-readings.js';

export function emitBatchChanges(
  tx: Tx,
  site: string,
  now: number,
  devices: [string, DeviceTouch][],
  alerts: AlertSeen[],
  reported: ReportedMessage[],
): void {
  const lastSeen = new Date(now).toISOString();
  for (const [device, t] of devices) {
    const latest: Record<string, unknown> = {};
    for (const [metric, { reading: r }] of t.latest)
      latest[metric] = {
        value: r.value,
        unit: r.unit,
        ts: new Date(r.ts).toISOString(),
        ...(r.score === undefined ? {} : { score: r.score }),
      };
    tx.emit({ type: 'twin', site, device, data: { lastSeen, added: t.stored, latest } });
  }
  for (const { device, epoch, r } of alerts) {
    tx.emit({
      type: 'anomaly',
      site,
      device,
      data: {
        metric: r.metric,
        ts: new Date(r.ts).toISOString(),
        value: r.value,
        unit: r.unit,
        score: r.score ?? null,
        model: r.model ?? null,
        epoch,
        seq: r.seq,
        explain: r.explain ?? null,
      },
    });
  }
  for (const m of reported) tx.emit({ type: 'reported', site, device: m.device, data: { version: m.version ?? null, patch: m.patch } });
}
