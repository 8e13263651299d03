/**
 * What was quarantined per device, on its twin (issue 13: "counted per device and visible on the
 * twin"): how many rows of the device's data went to quarantine (`quarantined`), the reason of the
 * last one and when. Counted at ingest and by the lakehouse writer (reason `lake`), only for the
 * site that owns the device (cloud/twins/twin-limits.ts).
 */
import type { Migration } from '../migrate.js';

export const deviceQuarantine: Migration = {
  id: '0009-device-quarantine',
  async up(tx) {
    await tx.exec(`
ALTER TABLE twins ADD COLUMN quarantined ${tx.dialect.int} NOT NULL DEFAULT 0;
ALTER TABLE twins ADD COLUMN quarantine_reason TEXT;
ALTER TABLE twins ADD COLUMN quarantine_at ${tx.dialect.int};
`);
  },
};
