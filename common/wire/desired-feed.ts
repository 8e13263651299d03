/**
 * The desired-state feed: `GET /v1/desired?site=&since=&limit=` answers one page of the site's
 * devices whose desired state changed after `since` (a cloud-wide change number), oldest first,
 * each with its full desired document. The cloud builds it (cloud/twins/), the collector checks
 * and applies it (collector/twin/desired-feed.ts). One definition for both sides.
 */
import Type, { type Static } from 'typebox';
import { DEVICE_ID_PATTERN } from './record.js';

export const desiredFeedItemSchema = Type.Object({
  device: Type.String({ pattern: DEVICE_ID_PATTERN }),
  /** The whole desired document (not a patch): the collector diffs it against what it holds. */
  desired: Type.Record(Type.String(), Type.Unknown()),
  version: Type.Integer({ minimum: 0 }),
  /** This change's number; the next poll asks for changes after the page's `next`. */
  cursor: Type.Integer({ minimum: 0 }),
});
export type DesiredFeedItem = Static<typeof desiredFeedItemSchema>;

export const desiredFeedPageSchema = Type.Object({
  items: Type.Array(desiredFeedItemSchema),
  /** The cursor to poll from next: the last item's, or `since` itself when the page is empty. */
  next: Type.Integer({ minimum: 0 }),
});
export type DesiredFeedPage = Static<typeof desiredFeedPageSchema>;
