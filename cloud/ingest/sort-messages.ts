/**
 * The first step of ingest, before any database work: each message of an envelope is checked on
 * its own and sorted by kind. A bad message costs only itself — it is rejected with a code, its
 * salvageable readings go to quarantine, and the rest of the batch goes on.
 */
import { EdgetwinError, ErrorCodes, isEdgetwinError } from '../../common/errors.js';
import { checkMessage, type ReportedMessage } from '../../common/wire/record.js';
import { toWellFormed } from '../../common/wire/storable.js';
import type { Refusal, Sent } from './claims.js';
import type { QualityRules, QuarantineRow } from './quality.js';

export interface SortedMessages {
  sent: Sent;
  rejected: Refusal[];
  /** [message index, reading index] pairs staging leaves out of silver; reading index -1 is the whole message. */
  drop: [number, number][];
  quarantine: QuarantineRow[];
  /** Readings of rejected messages (in `quarantine`, counted as rejected, not quarantined). */
  rejectedReadings: number;
}

/** IoT Hub's limit on a reported patch, the default of `twins.reportedMaxBytes`. */
const REPORTED_MAX_BYTES = 32 * 1024;

export function sortMessages(messages: readonly unknown[], quality: QualityRules, reportedMaxBytes = REPORTED_MAX_BYTES): SortedMessages {
  const out: SortedMessages = {
    sent: { telemetry: [], reported: [], refused: [] },
    rejected: [],
    drop: [],
    quarantine: [],
    rejectedReadings: 0,
  };
  const { telemetry, reported, refused } = out.sent;
  messages.forEach((m, index) => {
    try {
      const msg = checkMessage(m);
      if (msg.kind === 'telemetry') telemetry.push({ index, batch: msg.batch });
      else if (msg.kind === 'reported') {
        checkReportedSize(msg.reported, reportedMaxBytes);
        reported.push({ index, reported: msg.reported });
      } else {
        // Kept (in quarantine, not silver): accepted, not rejected — the collector must not dead-letter it again.
        const row = quality.refused(msg.quarantine);
        refused.push({ index, device: msg.quarantine.device, row });
        out.quarantine.push(row);
        out.drop.push([index, -1]);
      }
    } catch (err) {
      // Whatever a message does (a RangeError included), it costs only itself: never a 500 for the batch.
      const e = isEdgetwinError(err) ? err : new EdgetwinError(ErrorCodes.BAD_PAYLOAD, `message refused: ${String(err)}`);
      out.rejected.push({ index, code: e.code, message: toWellFormed(e.message) });
      const rows = quality.salvage(m, e.message, e.code);
      out.rejectedReadings += rows.length;
      out.quarantine.push(...rows);
      out.drop.push([index, -1]);
    }
  });
  return out;
}

/** A reported patch over twins.reportedMaxBytes is refused with a code, like IoT Hub's 32 KiB limit. */
function checkReportedSize(m: ReportedMessage, max: number): void {
  const bytes = Buffer.byteLength(JSON.stringify(m.patch));
  if (bytes > max)
    throw new EdgetwinError(ErrorCodes.LIMIT_EXCEEDED, `reported patch is ${bytes} bytes, over twins.reportedMaxBytes (${max})`, {
      details: { path: '/patch', bytes, max },
    });
}
