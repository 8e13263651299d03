/**
 * Every migration of the cloud's database, in the order they apply. To add a table or a column:
 * a new file `NNNN-what.ts` here exporting a `Migration` (next free number, never renumber or edit
 * one that shipped), appended to this list. docs/architecture.md, "Cloud store", has the how-to.
 */
import type { Migration } from '../migrate.js';
import { baseline } from './0001-baseline.js';
import { changeFeed } from './0002-change-feed.js';
import { c2d } from './0003-c2d.js';
import { alerts } from './0004-alerts.js';
import { tokenExpiry } from './0005-token-expiry.js';
import { predictionsDrift } from './0006-predictions-drift.js';
import { deviceOwnership } from './0007-device-ownership.js';
import { alertExplanations } from './0008-alert-explanations.js';
import { deviceQuarantine } from './0009-device-quarantine.js';

export const MIGRATIONS: readonly Migration[] = [
  baseline,
  changeFeed,
  c2d,
  alerts,
  tokenExpiry,
  predictionsDrift,
  deviceOwnership,
  alertExplanations,
  deviceQuarantine,
];
