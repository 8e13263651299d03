/**
 * The change feed: one row per event of `GET /v1/stream`, written in the transaction of the change
 * it reports (`tx.emit`), read by every replica (cloud/store/change-feed.ts). Rows are pruned after
 * `store.changeRetentionMs`.
 */
import type { Migration } from '../migrate.js';

export const changeFeed: Migration = {
  id: '0002-change-feed',
  async up(tx) {
    const { int, id } = tx.dialect;
    await tx.exec(`
CREATE TABLE changes (
  id ${id}, at ${int} NOT NULL, type TEXT NOT NULL, site TEXT NOT NULL, device TEXT, data TEXT NOT NULL
);
CREATE INDEX changes_at ON changes (at);
`);
  },
};
