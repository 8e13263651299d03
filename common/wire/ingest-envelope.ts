/**
 * The envelope a collector posts to the cloud's `POST /v1/ingest`: device batches exactly as the
 * devices published them, wrapped with the site and a batch id (the idempotency key).
 */
import { Ajv } from 'ajv';
import { EdgetwinError, ErrorCodes } from '../errors.js';

export const INGEST_VERSION = 1;

/**
 * A site id: letters, digits, `.`, `_`, `-`, at most 64 — but never `.` or `..`, which name folders
 * (the lakehouse partitions by site, the collector's state is per site) rather than a site.
 */
export const SITE_ID_PATTERN = '^(?!\\.{1,2}$)[A-Za-z0-9._-]{1,64}$';

export interface IngestEnvelope {
  v: typeof INGEST_VERSION;
  batchId: string;
  site: string;
  /** Telemetry batches; each is validated on its own so one bad one costs nothing else. */
  messages: unknown[];
}

export const ingestEnvelopeSchema = {
  type: 'object',
  required: ['v', 'batchId', 'site', 'messages'],
  additionalProperties: false,
  properties: {
    v: { const: INGEST_VERSION },
    batchId: { type: 'string', minLength: 1, maxLength: 128 },
    site: { type: 'string', pattern: SITE_ID_PATTERN },
    messages: { type: 'array', maxItems: 100000 },
  },
} as const;

const validate = new Ajv({ strict: true }).compile<IngestEnvelope>(ingestEnvelopeSchema);

export function checkEnvelope(obj: unknown): IngestEnvelope {
  if (!validate(obj)) {
    const e = validate.errors?.[0];
    throw new EdgetwinError(
      ErrorCodes.BAD_REQUEST,
      `invalid ingest envelope at ${e?.instancePath || '/'}: ${e?.message ?? 'schema mismatch'}`,
    );
  }
  return obj;
}

/** Builds the envelope around payloads that are already JSON text, without re-encoding them. */
export function spliceEnvelope(batchId: string, site: string, payloads: readonly string[]): string {
  return `{"v":${INGEST_VERSION},"batchId":${JSON.stringify(batchId)},"site":${JSON.stringify(site)},"messages":[${payloads.join(',')}]}`;
}
