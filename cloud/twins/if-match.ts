/**
 * `If-Match` on twin writes (RFC 9110 §13.1.1): `*`, or a list of entity tags compared *strongly*.
 * A twin's ETag is strong (`"<$version>"`): a weak tag (`W/"5"`) means "semantically equivalent",
 * which a conditional write must not accept, so it never matches. An unquoted number is taken as
 * the tag it names (curl users type `If-Match: 5`).
 */
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';

/** The strong entity tags of an If-Match header (`*` kept as is); weak ones are left out. */
export function strongTags(header: string): string[] {
  const out: string[] = [];
  for (const raw of header.split(',')) {
    const t = raw.trim();
    if (!t || t.startsWith('W/')) continue;
    out.push(/^"(.*)"$/.exec(t)?.[1] ?? t);
  }
  return out;
}

/** Throws 428 without If-Match, 412 (with the current ETag) when no strong tag names `version`. */
export function checkIfMatch(version: number, ifMatch: string | undefined): void {
  if (ifMatch === undefined) {
    throw new EdgetwinError(ErrorCodes.PRECONDITION_REQUIRED, "this write needs If-Match: the twin's ETag (from GET /v1/twins/{id}), or *");
  }
  const tags = strongTags(ifMatch);
  if (!tags.includes('*') && !tags.includes(String(version))) {
    const weak = tags.length === 0 && /W\//.test(ifMatch) ? ' (a weak ETag never matches: send the ETag as GET returned it)' : '';
    throw new EdgetwinError(
      ErrorCodes.PRECONDITION_FAILED,
      `ETag ${ifMatch} is stale: the twin is at "${version}"${weak}; re-read it and retry`,
      {
        details: { etag: `"${version}"` },
      },
    );
  }
}
