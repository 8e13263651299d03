/**
 * Site scope and device ownership, in one place (board decision D1). Routes call these before they
 * touch a store; the twin store, the ingest pipeline and the model promotions hold no scope checks
 * of their own — the pipeline only asks `ownershipRefusal` inside its transaction, where the owner
 * is read.
 *
 * The model: device ids are global, as in IoT Hub. A device belongs to exactly one site, the one
 * whose data for it arrived first (or the one an admin set); the twin's `site` is that owner and
 * ingest never changes it. Another site's message for it is refused per message with
 * EDGETWIN_ERR_DEVICE_CLAIMED (the collector dead-letters it), so identities (device, epoch, seq)
 * never collide across sites. Only an unscoped admin moves a device, audited.
 *
 * Scope: a principal with a site sees and changes that site only. Another site's device looks to
 * it exactly like one that does not exist (404: no oracle for which ids exist elsewhere, and no
 * other site's name in a message); naming another site explicitly (`?site=`, an envelope's `site`)
 * is refused with 403.
 */
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import type { Principal } from './tokens.js';

/**
 * Where Event Hubs events without a site property land (cloud/ingest/event-hubs-consumer.ts). It
 * holds a device only until a real site's data for it arrives: then that site takes it over.
 */
export const UNASSIGNED_SITE = 'unassigned';

/** Throws 403 when a site-scoped principal names another site. */
export function requireSite(p: Principal, site: string): void {
  if (p.site !== null && p.site !== site) {
    throw new EdgetwinError(ErrorCodes.FORBIDDEN, `token is scoped to site ${p.site}, not ${site}`, { details: { scope: p.site, site } });
  }
}

/** The site filter a list query must use: the scope, or the requested one (403 if they differ). */
export function scopedSite(p: Principal, requested: string | undefined): string | undefined {
  if (requested !== undefined) requireSite(p, requested);
  return requested ?? p.site ?? undefined;
}

/** A device the caller may not see, said the same way as one that does not exist. */
export function noSuchDevice(device: string): EdgetwinError {
  return new EdgetwinError(ErrorCodes.NOT_FOUND, `no twin for device ${device}`);
}

/**
 * The owning site of `device` when `p` may act on it; 404 when it has no twin or belongs to a site
 * outside `p`'s scope. `owner` is undefined when there is no twin.
 */
export function requireDevice(p: Principal, device: string, owner: string | undefined): string {
  if (owner === undefined || (p.site !== null && p.site !== owner)) throw noSuchDevice(device);
  return owner;
}

/** Whether `p` may see a device owned by `owner` (list filters, event streams). */
export function canSee(p: Principal, owner: string): boolean {
  return p.site === null || p.site === owner;
}

/**
 * The per-message refusal for a device another site owns, or undefined when `site` may send it
 * (it owns it, or nobody does yet and this message claims it). The owner is not named: one site
 * learns nothing about another beyond "taken".
 */
export function ownershipRefusal(device: string, site: string, owner: string | undefined): EdgetwinError | undefined {
  if (owner === undefined || owner === site || owner === UNASSIGNED_SITE) return undefined;
  return new EdgetwinError(
    ErrorCodes.DEVICE_CLAIMED,
    `device ${device} belongs to another site; device ids are global (an admin can move it: PUT /v1/twins/${device}/site)`,
    { details: { device, site } },
  );
}

/** Moving a device between sites (or claiming one for a site) is for an admin without a site scope. */
export function requireOwnerChange(p: Principal): void {
  if (p.role !== 'admin' || p.site !== null) {
    throw new EdgetwinError(ErrorCodes.FORBIDDEN, 'only an admin token without a site scope may set the site that owns a device', {
      details: { role: p.role, scope: p.site },
    });
  }
}

/**
 * Where a model promotion may reach for `p` (`POST /v1/models/{name}/{version}/promote`): a device
 * is checked like any device (404 outside the scope), a named site must be in scope, and a scoped
 * principal's site or tag promotion is bound to its own site.
 */
export function scopedPromotionTarget<T extends { site?: string | undefined; device?: string | undefined }>(
  p: Principal,
  target: T,
  deviceOwner: string | undefined,
): T {
  if (target.device !== undefined) requireDevice(p, target.device, deviceOwner);
  if (target.site !== undefined) requireSite(p, target.site);
  return p.site === null ? target : { ...target, site: p.site };
}

/** A promotion may be withdrawn by a principal whose scope covers it (one without a site needs no scope). */
export function requirePromotionScope(p: Principal, id: number, promotionSite: string | null): void {
  if (p.site !== null && promotionSite !== p.site)
    throw new EdgetwinError(ErrorCodes.FORBIDDEN, `token is scoped to site ${p.site}; promotion ${id} is not`, {
      details: { scope: p.site },
    });
}
