/**
 * Failure predictions and drift monitoring (issue 16): each prediction stored once by its identity
 * (device, epoch, seq) with the newest per asset for the twin; each drift histogram stored once by
 * its identity, merged at query time per (model version, cohort); references frozen per cohort;
 * evaluations kept for the API and the alert rule. Registry entries and promotions get the model's
 * kind, and promotions are assigned per (device, kind): a device runs one model of each kind.
 */
import type { Migration } from '../migrate.js';

export const predictionsDrift: Migration = {
  id: '0006-predictions-drift',
  async up(tx) {
    const { int, real, withoutRowid: wr } = tx.dialect;
    await tx.exec(`
CREATE TABLE predictions (
  device TEXT NOT NULL, epoch ${int} NOT NULL, seq ${int} NOT NULL, site TEXT NOT NULL, asset TEXT NOT NULL,
  ts ${int} NOT NULL, rul ${real} NOT NULL, unit TEXT NOT NULL, model TEXT NOT NULL, alert ${int} NOT NULL,
  received ${int} NOT NULL, PRIMARY KEY (device, epoch, seq)
)${wr};
CREATE INDEX predictions_asset ON predictions (device, asset, ts);
CREATE INDEX predictions_received ON predictions (received);
CREATE TABLE twin_predictions (
  device TEXT NOT NULL, asset TEXT NOT NULL, site TEXT NOT NULL, ts ${int} NOT NULL, epoch ${int} NOT NULL,
  seq ${int} NOT NULL, rul ${real} NOT NULL, unit TEXT NOT NULL, model TEXT NOT NULL, alert ${int} NOT NULL,
  PRIMARY KEY (device, asset)
)${wr};
CREATE INDEX twin_predictions_alert ON twin_predictions (alert, site);
CREATE TABLE drift_histograms (
  device TEXT NOT NULL, epoch ${int} NOT NULL, seq ${int} NOT NULL, site TEXT NOT NULL, model TEXT NOT NULL,
  stream TEXT NOT NULL, quantity TEXT NOT NULL, from_ts ${int} NOT NULL, to_ts ${int} NOT NULL,
  lo ${real} NOT NULL, hi ${real} NOT NULL, bins ${int} NOT NULL, first ${int} NOT NULL, counts TEXT NOT NULL,
  n ${int} NOT NULL, received ${int} NOT NULL, PRIMARY KEY (device, epoch, seq)
)${wr};
CREATE INDEX drift_histograms_model ON drift_histograms (model, to_ts);
CREATE INDEX drift_histograms_received ON drift_histograms (received);
CREATE TABLE drift_references (
  model TEXT NOT NULL, cohort TEXT NOT NULL, stream TEXT NOT NULL, quantity TEXT NOT NULL,
  lo ${real} NOT NULL, hi ${real} NOT NULL, bins ${int} NOT NULL, first ${int} NOT NULL, counts TEXT NOT NULL,
  n ${int} NOT NULL, source TEXT NOT NULL, from_ts ${int} NOT NULL, to_ts ${int} NOT NULL, created_at ${int} NOT NULL,
  PRIMARY KEY (model, cohort, stream, quantity)
)${wr};
CREATE TABLE drift_evaluations (
  model TEXT NOT NULL, cohort TEXT NOT NULL, window_start ${int} NOT NULL, window_end ${int} NOT NULL,
  stream TEXT NOT NULL, quantity TEXT NOT NULL, ks ${real}, p ${real}, psi ${real}, js ${real}, n ${int} NOT NULL,
  reference_n ${int}, drift ${int} NOT NULL, reason TEXT, site TEXT, evaluated_at ${int} NOT NULL,
  PRIMARY KEY (model, cohort, window_start, stream, quantity)
)${wr};
CREATE INDEX drift_evaluations_latest ON drift_evaluations (window_end, drift);
ALTER TABLE models ADD COLUMN kind TEXT NOT NULL DEFAULT 'anomaly';
ALTER TABLE model_promotions ADD COLUMN kind TEXT NOT NULL DEFAULT 'anomaly';
CREATE TABLE model_kind_assignments (
  device TEXT NOT NULL, kind TEXT NOT NULL, promotion ${int} NOT NULL, PRIMARY KEY (device, kind)
)${wr};
INSERT INTO model_kind_assignments (device, kind, promotion) SELECT device, 'anomaly', promotion FROM model_assignments;
`);
  },
};
