/**
 * Identity for readings the collector builds itself (from IoT Hub SDK messages, which carry no
 * epoch or seq): per device, the next seq lives in the spool database and advances inside the
 * same transaction that spools the readings, so a PUBACK implies both are on disk and no
 * (device, epoch, seq) is ever handed out twice.
 *
 * The epoch is the spool's incarnation: seconds since the Unix epoch when this spool file was
 * created. A quarantined (corrupt) spool starts a new file, hence a new, later epoch, so seqs may
 * restart at 1 without colliding. Such epochs (~1.7e9) cannot meet an agent's boot epochs,
 * which count up from 1.
 */
import type { SqliteOutbox } from '../../common/outbox/outbox.js';
import { encodeReading, spliceBatch } from '../../common/wire/record.js';
import type { UnsequencedReading } from '../broker/iothub-telemetry.js';

export class DeviceSequencer {
  readonly epoch: number;
  private readonly getSeq;
  private readonly setSeq;

  constructor(spool: SqliteOutbox, now: () => number = Date.now) {
    const db = spool.db;
    db.exec('CREATE TABLE IF NOT EXISTS device_seq (device TEXT PRIMARY KEY, seq INTEGER NOT NULL)');
    let epoch = spool.meta.get('assigned_epoch');
    if (epoch === 0) {
      epoch = Math.floor(now() / 1000);
      spool.meta.set('assigned_epoch', epoch);
    }
    this.epoch = epoch;
    this.getSeq = db.prepare<[string], { seq: number }>('SELECT seq FROM device_seq WHERE device = ?');
    this.setSeq = db.prepare('INSERT INTO device_seq (device, seq) VALUES (?, ?) ON CONFLICT(device) DO UPDATE SET seq = excluded.seq');
  }

  /**
   * Gives the readings the device's next seqs and returns the encoded telemetry batch. Call it
   * inside the spool transaction that appends the batch: a rollback takes the seqs back too.
   */
  assign(device: string, readings: readonly UnsequencedReading[]): string {
    const last = this.getSeq.get(device)?.seq ?? 0;
    this.setSeq.run(device, last + readings.length);
    return spliceBatch(
      device,
      this.epoch,
      readings.map((r, i) => encodeReading({ seq: last + 1 + i, ...r })),
    );
  }
}
