/** Config of the cloud's Event Hubs consumer (kept apart so config.ts does not load the SDK). */
import Type, { type Static } from 'typebox';
import { Section } from '../../common/config.js';
import { eventHubsConnectionProperties } from '../../common/event-hubs-config.js';

const eventHubsCheckpointConfigSchema = Section({
  /** `sqlite`: a local file next to the twin store (one host); `blob`: Azure Blob Storage (many hosts). */
  store: Type.Enum(['sqlite', 'blob'], { default: 'sqlite' }),
  /** Env EDGETWIN_CHECKPOINT_BLOB_CONNECTION_STRING. */
  blobConnectionString: Type.Optional(Type.String({ minLength: 1 })),
  /** e.g. https://acct.blob.core.windows.net, with DefaultAzureCredential. */
  blobAccountUrl: Type.Optional(Type.String({ pattern: '^https?://' })),
  /**
   * The container itself, e.g. https://acct.blob.core.windows.net/checkpoints (what the Terraform
   * sets, env EDGETWIN_CHECKPOINT_CONTAINER_URL): a SAS in its query authenticates, otherwise
   * DefaultAzureCredential. Replaces blobAccountUrl + containerName.
   */
  containerUrl: Type.Optional(Type.String({ pattern: '^https?://' })),
  containerName: Type.String({ pattern: '^[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]$', default: 'eventhub-checkpoints' }),
});
export type EventHubsCheckpointConfig = Static<typeof eventHubsCheckpointConfigSchema>;

export const eventHubsConsumerConfigSchema = Section({
  enabled: Type.Boolean({ default: false }),
  // connectionString (env EDGETWIN_EVENTHUBS_CONNECTION_STRING) | fullyQualifiedNamespace (+ eventHubName), as the collector's sink.
  ...eventHubsConnectionProperties,
  consumerGroup: Type.String({ minLength: 1, default: '$Default' }),
  /** Where a partition with no checkpoint starts. */
  startPosition: Type.Enum(['earliest', 'latest'], { default: 'earliest' }),
  maxBatchSize: Type.Integer({ minimum: 1, maximum: 10000, default: 500 }),
  maxWaitTimeMs: Type.Integer({ minimum: 10, default: 1000 }),
  /** Pause between retries of a batch the pipeline could not store (the partition waits, nothing is skipped). */
  retryDelayMs: Type.Integer({ minimum: 10, default: 1000 }),
  /** How consumers share partitions: `balanced` takes one more per cycle, `greedy` all it can at once. */
  loadBalancingStrategy: Type.Enum(['balanced', 'greedy'], { default: 'balanced' }),
  /** Load-balancing cycle. */
  updateIntervalMs: Type.Integer({ minimum: 100, default: 10_000 }),
  /** A partition whose owner has not renewed its claim this long is taken over. */
  ownershipExpirationMs: Type.Integer({ minimum: 1000, default: 60_000 }),
  checkpoint: eventHubsCheckpointConfigSchema,
});
export type EventHubsConsumerConfig = Static<typeof eventHubsConsumerConfigSchema>;
