/**
 * Alert explanations on the twin (issue 15, docs/anomaly-detection.md): the newest reading of a
 * metric keeps the explanation it carried (`twin_metrics.explanation`, JSON, only on alerts), and the
 * twin keeps its newest alert whatever came after it (`twins.last_alert`, JSON: metric, ts, score,
 * model, explain; `last_alert_ts` orders them so that a late backlog batch never replaces a newer one).
 */
import type { Migration } from '../migrate.js';

export const alertExplanations: Migration = {
  id: '0008-alert-explanations',
  async up(tx) {
    await tx.exec(`
ALTER TABLE twin_metrics ADD COLUMN explanation TEXT;
ALTER TABLE twins ADD COLUMN last_alert TEXT;
ALTER TABLE twins ADD COLUMN last_alert_ts ${tx.dialect.int};
`);
  },
};
