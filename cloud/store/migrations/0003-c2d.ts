/**
 * Cloud to device (issue 18): device-bound messages with their delivery state, method calls
 * relayed to the replica that holds a site's channel, and which replica holds which site's channel
 * (cloud/c2d/).
 */
import type { Migration } from '../migrate.js';

export const c2d: Migration = {
  id: '0003-c2d',
  async up(tx) {
    const { int, id } = tx.dialect;
    await tx.exec(`
CREATE TABLE device_messages (
  seq ${id}, id TEXT NOT NULL UNIQUE, device TEXT NOT NULL, site TEXT NOT NULL, body TEXT NOT NULL,
  properties TEXT NOT NULL, correlation_id TEXT, created ${int} NOT NULL, expires ${int} NOT NULL,
  created_by TEXT NOT NULL, state TEXT NOT NULL, state_at ${int} NOT NULL, code TEXT, reason TEXT
);
CREATE INDEX device_messages_device ON device_messages (device, seq);
CREATE INDEX device_messages_site_state ON device_messages (site, state, seq);
CREATE INDEX device_messages_state_expires ON device_messages (state, expires);
CREATE TABLE method_calls (
  id TEXT PRIMARY KEY, site TEXT NOT NULL, device TEXT NOT NULL, method TEXT NOT NULL, payload TEXT NOT NULL,
  response_timeout_ms ${int} NOT NULL, connect_timeout_ms ${int} NOT NULL, created ${int} NOT NULL,
  state TEXT NOT NULL, taken_by TEXT, result TEXT
);
CREATE INDEX method_calls_state ON method_calls (state, site);
CREATE TABLE site_channels (site TEXT PRIMARY KEY, replica TEXT NOT NULL, seen ${int} NOT NULL);
`);
  },
};
