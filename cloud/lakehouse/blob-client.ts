/**
 * Where a Blob container is and how to authenticate to it, for the lakehouse mirror and the Event
 * Hubs checkpoint store. Accepted URL forms (all mapped to the Blob endpoint, which ADLS Gen2
 * accounts also serve):
 *   https://<acct>.blob.core.windows.net/<container>[/<prefix>][?<SAS>]
 *   https://<acct>.dfs.core.windows.net/<filesystem>[/<prefix>]
 *   abfs[s]://<filesystem>@<acct>.dfs.core.windows.net[/<prefix>]
 *   http(s)://<ip or localhost>:<port>/<acct>/<container>[/<prefix>]   (path-style: Azurite, tests)
 * Credentials, first that applies: a SAS in the URL; a connection string (account key or SAS);
 * the given TokenCredential; DefaultAzureCredential (managed identity in Azure). SAS queries and
 * keys are secrets: only `redactUrl` output (common/redact.ts) may reach logs.
 */
import type { TokenCredential } from '@azure/identity';
import type { ContainerClient, StoragePipelineOptions } from '@azure/storage-blob';
import { redactUrl } from '../../common/redact.js';

// Re-exported for cloud/ingest/event-hubs-consumer.ts, which still imports it from here.

export interface BlobLocation {
  /** Container URL without query, e.g. https://acct.blob.core.windows.net/lake. */
  containerUrl: string;
  account: string;
  container: string;
  /** Folder inside the container (no leading/trailing slash; '' = the container root). */
  prefix: string;
  /** SAS query string from the URL (without '?'), a secret. */
  sas: string;
}

const CONTAINER = /^(?:[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]|\$root)$/;
const PATH_STYLE_HOST = /^(?:localhost|\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-f:]+\])$/i;

/** Parses a lakehouse/checkpoint container URL; throws an Error naming what is wrong (never the query). */
export function parseBlobUrl(raw: string): BlobLocation {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new Error(`is not a URL: ${redactUrl(raw)}`);
  }
  let scheme = u.protocol;
  let host = u.host;
  let segments = u.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  if (scheme === 'abfss:' || scheme === 'abfs:') {
    // abfss://<filesystem>@<account>.dfs.core.windows.net/<path>
    if (!u.username) throw new Error('abfss:// URL needs <filesystem>@<account>.dfs.core.windows.net');
    segments = [decodeURIComponent(u.username), ...segments];
    scheme = scheme === 'abfss:' ? 'https:' : 'http:';
  } else if (scheme !== 'https:' && scheme !== 'http:') {
    throw new Error(`must be https://, http:// or abfss:// (got ${scheme})`);
  }
  host = host.replace(/\.dfs\.core\.windows\.net$/i, '.blob.core.windows.net');
  let account: string;
  let base: string;
  if (PATH_STYLE_HOST.test(u.hostname)) {
    account = segments.shift() ?? '';
    base = `${scheme}//${host}/${account}`;
  } else {
    account = host.split('.')[0] ?? '';
    base = `${scheme}//${host}`;
  }
  const container = segments.shift() ?? '';
  if (!account) throw new Error('names no storage account');
  if (!CONTAINER.test(container)) throw new Error(`names no valid container (3-63 lowercase letters, digits, dashes): "${container}"`);
  return { containerUrl: `${base}/${container}`, account, container, prefix: segments.join('/'), sas: u.search.replace(/^\?/, '') };
}

function connectionStringFields(cs: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of cs.split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out.set(part.slice(0, i).trim().toLowerCase(), part.slice(i + 1).trim());
  }
  return out;
}

export interface OpenContainerOptions {
  /** Account-key or SAS connection string (tests, hosts without managed identity). */
  connectionString?: string | undefined;
  credential?: TokenCredential | undefined;
  pipeline?: StoragePipelineOptions;
}

/** A ContainerClient for the location, with the first credential that applies (see above). */
export async function openContainer(loc: BlobLocation, opts: OpenContainerOptions = {}): Promise<ContainerClient> {
  const { AnonymousCredential, ContainerClient, StorageSharedKeyCredential } = await import('@azure/storage-blob');
  if (loc.sas) return new ContainerClient(`${loc.containerUrl}?${loc.sas}`, new AnonymousCredential(), opts.pipeline);
  if (opts.connectionString) {
    const f = connectionStringFields(opts.connectionString);
    const key = f.get('accountkey');
    const sas = f.get('sharedaccesssignature');
    if (key)
      return new ContainerClient(loc.containerUrl, new StorageSharedKeyCredential(f.get('accountname') ?? loc.account, key), opts.pipeline);
    if (sas) return new ContainerClient(`${loc.containerUrl}?${sas.replace(/^\?/, '')}`, new AnonymousCredential(), opts.pipeline);
    throw new Error('connection string has neither AccountKey nor SharedAccessSignature');
  }
  const credential = opts.credential ?? new (await import('@azure/identity')).DefaultAzureCredential();
  return new ContainerClient(loc.containerUrl, credential, opts.pipeline);
}

/**
 * Creates the container when missing. A container-scoped SAS may not create (403): the container
 * then has to exist already, which the first real request shows.
 */
export async function ensureContainer(container: ContainerClient): Promise<void> {
  try {
    await container.createIfNotExists();
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode !== 403) throw err;
  }
}
