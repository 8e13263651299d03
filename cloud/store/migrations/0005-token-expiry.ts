/** Tokens may expire (`edgetwin cloud tokens create --expires-in`): null = never. */
import type { Migration } from '../migrate.js';

export const tokenExpiry: Migration = {
  id: '0005-token-expiry',
  async up(tx) {
    await tx.exec(`ALTER TABLE tokens ADD COLUMN expires_at ${tx.dialect.int};`);
  },
};
