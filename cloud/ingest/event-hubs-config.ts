/** Config of the cloud's Event Hubs consumer (kept apart so config.ts does not load the SDK). */

export interface EventHubsCheckpointConfig {
  /** `sqlite`: a local file next to the twin store (one host); `blob`: Azure Blob Storage (many hosts). */
  store: 'sqlite' | 'blob';
  /** Env EDGETWIN_CHECKPOINT_BLOB_CONNECTION_STRING. */
  blobConnectionString?: string;
  /** e.g. https://acct.blob.core.windows.net, with DefaultAzureCredential. */
  blobAccountUrl?: string;
  /**
   * The container itself, e.g. https://acct.blob.core.windows.net/checkpoints (what the Terraform
   * sets, env EDGETWIN_CHECKPOINT_CONTAINER_URL): a SAS in its query authenticates, otherwise
   * DefaultAzureCredential. Replaces blobAccountUrl + containerName.
   */
  containerUrl?: string;
  containerName: string;
}

export interface EventHubsConsumerConfig {
  enabled: boolean;
  /** Env EDGETWIN_EVENTHUBS_CONNECTION_STRING. */
  connectionString?: string;
  /** Entra ID instead of a connection string, with DefaultAzureCredential. */
  fullyQualifiedNamespace?: string;
  eventHubName?: string;
  consumerGroup: string;
  /** Where a partition with no checkpoint starts. */
  startPosition: 'earliest' | 'latest';
  maxBatchSize: number;
  maxWaitTimeMs: number;
  /** Pause between retries of a batch the pipeline could not store (the partition waits, nothing is skipped). */
  retryDelayMs: number;
  /** How consumers share partitions: `balanced` takes one more per cycle, `greedy` all it can at once. */
  loadBalancingStrategy: 'balanced' | 'greedy';
  /** Load-balancing cycle. */
  updateIntervalMs: number;
  /** A partition whose owner has not renewed its claim this long is taken over. */
  ownershipExpirationMs: number;
  checkpoint: EventHubsCheckpointConfig;
}

export const eventHubsConsumerDefaults: EventHubsConsumerConfig = {
  enabled: false,
  consumerGroup: '$Default',
  startPosition: 'earliest',
  maxBatchSize: 500,
  maxWaitTimeMs: 1000,
  retryDelayMs: 1000,
  loadBalancingStrategy: 'balanced',
  updateIntervalMs: 10_000,
  ownershipExpirationMs: 60_000,
  checkpoint: { store: 'sqlite', containerName: 'eventhub-checkpoints' },
};

export const eventHubsConsumerConfigSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    enabled: { type: 'boolean' },
    connectionString: { type: 'string', pattern: '^Endpoint=' },
    fullyQualifiedNamespace: { type: 'string', minLength: 1 },
    eventHubName: { type: 'string', minLength: 1 },
    consumerGroup: { type: 'string', minLength: 1 },
    startPosition: { enum: ['earliest', 'latest'] },
    maxBatchSize: { type: 'integer', minimum: 1, maximum: 10000 },
    maxWaitTimeMs: { type: 'integer', minimum: 10 },
    retryDelayMs: { type: 'integer', minimum: 10 },
    loadBalancingStrategy: { enum: ['balanced', 'greedy'] },
    updateIntervalMs: { type: 'integer', minimum: 100 },
    ownershipExpirationMs: { type: 'integer', minimum: 1000 },
    checkpoint: {
      type: 'object',
      additionalProperties: false,
      properties: {
        store: { enum: ['sqlite', 'blob'] },
        blobConnectionString: { type: 'string', minLength: 1 },
        blobAccountUrl: { type: 'string', pattern: '^https?://' },
        containerUrl: { type: 'string', pattern: '^https?://' },
        containerName: { type: 'string', pattern: '^[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]$' },
      },
    },
  },
} as const;
