/**
 * The Blob container behind the Event Hubs BlobCheckpointStore (partition ownership and
 * checkpoints shared by every consumer process), from one of the three ways config names it.
 */
import type { TokenCredential } from '@azure/identity';
import type { ContainerClient } from '@azure/storage-blob';
import { openContainer, parseBlobUrl } from '../lakehouse/blob-client.js';
import type { EventHubsCheckpointConfig } from './event-hubs-config.js';

export async function checkpointContainer(c: EventHubsCheckpointConfig, credential?: TokenCredential): Promise<ContainerClient> {
  if (c.containerUrl) return openContainer(parseBlobUrl(c.containerUrl), { credential });
  if (c.blobConnectionString) {
    const { ContainerClient } = await import('@azure/storage-blob');
    return new ContainerClient(c.blobConnectionString, c.containerName);
  }
  return openContainer(parseBlobUrl(`${c.blobAccountUrl!.replace(/\/$/, '')}/${c.containerName}`), { credential });
}
