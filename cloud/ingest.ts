/**
 * Ingest: validates an envelope and each device batch in it on its own, stores the good ones in
 * one transaction, and reports the bad ones per message (partial success), so one broken device
 * never costs another device's data.
 */
import { checkEnvelope } from '../common/ingest-envelope.js';
import { EdgetwinError, ErrorCodes, isEdgetwinError } from '../common/errors.js';
import { checkBatch, type TelemetryBatch } from '../common/record.js';
import type { IngestOutcome, TwinStore } from './twin-store.js';

export interface IngestResult extends IngestOutcome {
  batchId: string;
  rejected: { index: number; code: string; message: string }[];
}

export function ingestEnvelope(store: TwinStore, body: unknown): IngestResult {
  const env = checkEnvelope(body);
  const good: TelemetryBatch[] = [];
  const rejected: IngestResult['rejected'] = [];
  env.messages.forEach((m, index) => {
    try {
      good.push(checkBatch(m));
    } catch (err) {
      const e = isEdgetwinError(err) ? err : new EdgetwinError(ErrorCodes.BAD_PAYLOAD, String(err));
      rejected.push({ index, code: e.code, message: e.message });
    }
  });
  const outcome = store.ingest(env.site, env.batchId, good);
  return { batchId: env.batchId, ...outcome, rejected };
}
