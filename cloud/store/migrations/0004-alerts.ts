/**
 * Alerts (cloud/alerts/): rules from config and the API, alerts with their lifecycle (pending →
 * firing → resolved; at most one open alert per rule and key, enforced by a partial unique index,
 * so two replicas can never open the same alert twice), silences, and the durable notification
 * queue with its dead letter.
 */
import type { Migration } from '../migrate.js';

export const alerts: Migration = {
  id: '0004-alerts',
  async up(tx) {
    const { int, real, id } = tx.dialect;
    await tx.exec(`
CREATE TABLE alert_rules (
  id TEXT PRIMARY KEY, origin TEXT NOT NULL, spec TEXT NOT NULL, version ${int} NOT NULL DEFAULT 1,
  created_at ${int} NOT NULL, created_by TEXT NOT NULL, updated_at ${int} NOT NULL
);
CREATE TABLE alerts (
  id TEXT PRIMARY KEY, rule_id TEXT NOT NULL, fingerprint TEXT NOT NULL, alert_key TEXT NOT NULL,
  kind TEXT NOT NULL, rule_name TEXT NOT NULL, severity TEXT NOT NULL, state TEXT NOT NULL,
  site TEXT, device TEXT, summary TEXT NOT NULL, value ${real}, labels TEXT NOT NULL DEFAULT '{}',
  started_at ${int} NOT NULL, fired_at ${int}, resolved_at ${int}, last_seen_at ${int} NOT NULL,
  notified_at ${int}, acked_at ${int}, acked_by TEXT, ack_note TEXT
);
CREATE UNIQUE INDEX alerts_open ON alerts (fingerprint) WHERE state <> 'resolved';
CREATE INDEX alerts_state ON alerts (state, started_at);
CREATE INDEX alerts_device ON alerts (device, started_at);
CREATE INDEX alerts_site ON alerts (site, started_at);
CREATE TABLE alert_silences (
  id TEXT PRIMARY KEY, rule_id TEXT, site TEXT, device TEXT, starts_at ${int} NOT NULL, ends_at ${int} NOT NULL,
  comment TEXT NOT NULL, created_by TEXT NOT NULL, created_at ${int} NOT NULL
);
CREATE INDEX alert_silences_ends ON alert_silences (ends_at);
CREATE TABLE alert_notifications (
  id ${id}, destination TEXT NOT NULL, alert_id TEXT NOT NULL, event TEXT NOT NULL, body TEXT NOT NULL,
  state TEXT NOT NULL, attempts ${int} NOT NULL DEFAULT 0, next_at ${int} NOT NULL, created_at ${int} NOT NULL,
  sent_at ${int}, last_error TEXT
);
CREATE INDEX alert_notifications_queue ON alert_notifications (destination, state, id);
CREATE INDEX alert_notifications_alert ON alert_notifications (alert_id);
`);
  },
};
