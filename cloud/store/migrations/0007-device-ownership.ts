/**
 * Device ownership (board decision D1, issue 13): a device belongs to one site, the twin's `site`,
 * claimed by the first site whose data for it arrives or set by an admin (`PUT /v1/twins/{id}/site`,
 * audited); ingest never changes it. These columns say since when and by whom.
 *
 * Existing twins keep their `site` as their owner. Before this migration a later site's batch could
 * take a device over, so a device id that two sites used is owned by whichever sent last: the
 * backfill marks such rows `migration` and docs/security.md ("Device ownership") says how to find
 * and move them.
 */
import type { Migration } from '../migrate.js';

export const deviceOwnership: Migration = {
  id: '0007-device-ownership',
  async up(tx) {
    await tx.exec(`
ALTER TABLE twins ADD COLUMN claimed_at ${tx.dialect.int};
ALTER TABLE twins ADD COLUMN claimed_by TEXT;
UPDATE twins SET claimed_at = first_seen, claimed_by = 'migration' WHERE claimed_at IS NULL;
`);
  },
};
