/**
 * The loopback Event Hubs (AMQP) and Blob servers a cloud consumer with Blob checkpoints runs
 * against, both closed when the test ends.
 */
import { ContainerClient, ContainerSASPermissions, StorageSharedKeyCredential } from '@azure/storage-blob';
import type { Test } from 'tap';
import { BlobTestServer } from './blob-server.js';
import { EventHubsTestServer } from './event-hubs-server.js';

export interface CheckpointHub {
  blob: BlobTestServer;
  hub: EventHubsTestServer;
  /** The `eh-checkpoints` container's URL with a SAS in its query (created before it is returned). */
  containerUrl: string;
}

export async function startCheckpointHub(t: Test, partitionCount: number): Promise<CheckpointHub> {
  const blob = await new BlobTestServer().start();
  t.teardown(() => blob.close());
  const hub = await new EventHubsTestServer({ partitionCount }).start();
  t.teardown(() => hub.close());
  // The Terraform gives the container URL; here a SAS in its query stands in for managed identity.
  const admin = new ContainerClient(`${blob.endpoint}/eh-checkpoints`, new StorageSharedKeyCredential(blob.account, blob.key));
  await admin.create();
  const containerUrl = await admin.generateSasUrl({
    permissions: ContainerSASPermissions.parse('rwdlc'),
    expiresOn: new Date(Date.now() + 3_600_000),
  });
  return { blob, hub, containerUrl };
}
