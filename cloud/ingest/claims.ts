/**
 * Device ownership at ingest (board decision D1; the rule is cloud/auth/site-policy.ts). Inside a
 * batch's transaction the devices it names are claimed (cloud/twins/ownership.ts); each message for
 * a device another site owns is then refused on its own with EDGETWIN_ERR_DEVICE_CLAIMED — the
 * collector dead-letters it, its readings go to the sending site's quarantine like any refused
 * message's — and the rest of the batch goes on. Never a silent "duplicate": two sites' devices
 * with one id would otherwise share identities (device, epoch, seq) and one would lose its data.
 */
import { ErrorCodes } from '../../common/errors.js';
import type { ReportedMessage, TelemetryBatch } from '../../common/wire/record.js';
import { ownershipRefusal } from '../auth/site-policy.js';
import type { QuarantineRow } from './quality.js';

export interface Refusal {
  index: number;
  code: string;
  message: string;
}

/** The items `site` may send; a refusal is added to `refusals` for each of the others. */
export function keepOwned<T extends { index: number }>(
  items: readonly T[],
  device: (item: T) => string,
  site: string,
  owners: ReadonlyMap<string, string>,
  refusals: Refusal[],
): T[] {
  return items.filter((item) => {
    const d = device(item);
    const e = ownershipRefusal(d, site, owners.get(d));
    if (e) refusals.push({ index: item.index, code: e.code, message: e.message });
    return e === undefined;
  });
}

/** True when every message of a batch was refused because another site owns its device: the route answers 409. */
export function allClaimedElsewhere(messages: number, rejected: readonly Refusal[]): boolean {
  return messages > 0 && rejected.length === messages && rejected.every((r) => r.code === ErrorCodes.DEVICE_CLAIMED);
}

/** What a batch's valid messages name, by kind, each with its index in the envelope. */
export interface Sent {
  telemetry: { index: number; batch: TelemetryBatch }[];
  reported: { index: number; reported: ReportedMessage }[];
  /** Payloads the collector could not read, kept raw (quarantine kind), with their quarantine row. */
  refused: { index: number; device: string; row: QuarantineRow }[];
}

export function devicesOf(sent: Sent): string[] {
  return [
    ...sent.telemetry.map((t) => t.batch.device),
    ...sent.reported.map((r) => r.reported.device),
    ...sent.refused.map((r) => r.device),
  ];
}

/** The part of `sent` that `site` may send, and a refusal for each message of another site's device. */
export function splitByOwner(sent: Sent, site: string, owners: ReadonlyMap<string, string>): Sent & { claimed: Refusal[] } {
  const claimed: Refusal[] = [];
  return {
    telemetry: keepOwned(sent.telemetry, (t) => t.batch.device, site, owners, claimed),
    reported: keepOwned(sent.reported, (r) => r.reported.device, site, owners, claimed),
    refused: keepOwned(sent.refused, (r) => r.device, site, owners, claimed),
    claimed,
  };
}
