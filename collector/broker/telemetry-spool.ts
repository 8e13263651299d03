/**
 * Where a device's telemetry PUBLISH becomes spool rows: the payload is read (a telemetry batch or
 * an IoT Hub metric map, iothub-telemetry.ts), written to the spool with group commit, and only
 * then acknowledged by the broker. What cannot be stored is acknowledged too (the device must not
 * resend it forever), counted, and kept in quarantine: nothing a device publishes is silently dropped.
 */
import { EdgetwinError, ErrorCodes, errorMessage, isEdgetwinError } from '../../common/errors.js';
import { encodeQuarantine, topics } from '../../common/wire/record.js';
import type { AckGroup } from './ack-group.js';
import type { BrokerMetrics } from './broker-metrics.js';
import type { MqttBrokerDeps } from './broker-deps.js';
import { parseDeviceMessage, propertyBag } from './iothub-telemetry.js';

export class TelemetrySpool {
  constructor(
    private readonly maxPayloadBytes: number,
    private readonly deps: MqttBrokerDeps,
    private readonly m: BrokerMetrics,
    /** Counts accepted readings per commit group. */
    private readonly group: AckGroup,
  ) {}

  /** Spools one telemetry payload of `device`; `done` is the acknowledgement (null: durable). */
  write(device: string, payload: Buffer, topic: () => string, done: (err: Error | null) => void): void {
    if (payload.length > this.maxPayloadBytes) {
      const why = `payload of ${payload.length} bytes is over mqtt.maxPayloadBytes (${this.maxPayloadBytes})`;
      return this.quarantine(device, payload, topic, new EdgetwinError(ErrorCodes.PAYLOAD_TOO_LARGE, why), done);
    }
    let readings: number;
    let build: (() => string) | undefined;
    /** A metric map's fields that are not numeric metrics: the readings are stored, the message is also kept in quarantine. */
    let partial: EdgetwinError | undefined;
    try {
      const bag = (): URLSearchParams => propertyBag(topic(), topics.telemetryPrefix(device));
      const msg = parseDeviceMessage(device, payload, bag, Date.now(), this.deps.timestamps, this.deps.maxMetricsPerMessage);
      readings = msg.kind === 'batch' ? msg.readings : msg.readings.length;
      if (msg.kind === 'metrics') {
        const seq = this.deps.sequencer;
        if (!seq) throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, 'metric maps need a sequencer; send a telemetry batch');
        if (msg.skipped > 0) {
          this.m.skippedFields.inc(msg.skipped);
          const more = msg.skipped > msg.skippedNames.length ? ` and ${msg.skipped - msg.skippedNames.length} more` : '';
          const why = `fields that are not numeric metrics, not stored as readings: ${msg.skippedNames.join(', ')}${more}`;
          partial = new EdgetwinError(ErrorCodes.BAD_VALUE, why);
        }
        build = () => seq.assign(device, msg.readings);
      }
    } catch (err) {
      const e = isEdgetwinError(err) ? err : new EdgetwinError(ErrorCodes.BAD_PAYLOAD, errorMessage(err));
      return this.quarantine(device, payload, topic, e, done);
    }
    const finish = (err: Error | null): void => {
      if (err) {
        this.m.rejected.inc({ code: isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL });
        return done(err);
      }
      this.group.add(readings);
      done(null);
    };
    const spool = (): void => {
      if (build) this.deps.spoolWriter.write({ body: '', key: device }, finish, build);
      else this.deps.spoolWriter.write({ body: payload.toString('utf8'), key: device }, finish);
    };
    if (!partial) return spool();
    // The quarantine copy first: if the readings' write then fails, the device's resend repeats only
    // a quarantine copy (harmless), never collector-numbered readings (which would be stored twice).
    this.keep(device, payload, topic, partial, (err) => (err ? done(err) : spool()));
  }

  /**
   * A payload the collector cannot read or will not store is acknowledged (the device must not
   * resend it forever) and kept: its bytes and the reason go into the spool as a quarantine message
   * (common/wire/record.ts) and reach the cloud's quarantine like telemetry — nothing a device
   * publishes is silently dropped. Only the first bytes of an oversize payload are kept.
   */
  private quarantine(device: string, payload: Buffer, topic: () => string, err: EdgetwinError, done: (err: Error | null) => void): void {
    this.m.rejected.inc({ code: err.code });
    this.deps.log.warn({ device, code: err.code, bytes: payload.length, err: err.message }, 'payload refused: kept in quarantine');
    this.keep(device, payload, topic, err, done);
  }

  /** Spools the quarantine message for `payload` (refused whole, or partly stored). */
  private keep(device: string, payload: Buffer, topic: () => string, err: EdgetwinError, done: (err: Error | null) => void): void {
    const t = topic();
    const prefix = topics.telemetryPrefix(device);
    const body = encodeQuarantine({
      device,
      ts: Date.now(),
      code: err.code,
      reason: err.message,
      payload,
      whole: payload.length <= this.maxPayloadBytes,
      properties: t.startsWith(prefix) ? t.slice(prefix.length) : undefined,
    });
    this.deps.spoolWriter.write({ body, key: device }, (e) => {
      if (e) this.m.rejected.inc({ code: isEdgetwinError(e) ? e.code : ErrorCodes.INTERNAL });
      else this.m.quarantined.inc({ code: err.code });
      done(e);
    });
  }
}
