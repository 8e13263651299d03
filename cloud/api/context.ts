/** What the API routes are built from: the cloud's services, handed over by cloud/cloud.ts. */
import type { Logger } from '../../common/log.js';
import type { Registry } from '../../common/metrics.js';
import type { Alerting } from '../alerts/alerting.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { CloudC2d } from '../c2d/cloud-c2d.js';
import type { Authenticator } from '../auth/authenticator.js';
import type { SignInAudit } from '../auth/sign-in-audit.js';
import type { CloudConfig } from '../config.js';
import type { IngestPipeline } from '../ingest/pipeline.js';
import type { Lakehouse } from '../lakehouse/lakehouse.js';
import type { ModelPromotions } from '../models/model-promotions.js';
import type { ModelRegistry } from '../models/model-registry.js';
import type { SiteStatusStore } from '../sites/site-status-store.js';
import type { Store } from '../store/store.js';
import type { DeviceOwnership } from '../twins/ownership.js';
import type { DriftService } from '../drift/drift-service.js';
import type { PredictionStore } from '../predictions/prediction-store.js';
import type { TwinStore } from '../twins/twin-store.js';
import type { CloudEvents } from './events.js';

export interface ServerContext {
  cfg: CloudConfig;
  log: Logger;
  registry: Registry;
  auth: Authenticator;
  /** The database (cloud/store/): every module reads and writes state through it. */
  store: Store;
  twins: TwinStore;
  /** Which site owns which device (board decision D1; rules in cloud/auth/site-policy.ts). */
  ownership: DeviceOwnership;
  pipeline: IngestPipeline;
  audit: AuditLog;
  events: CloudEvents;
  lake: Lakehouse;
  /** The model registry and its promotions (`/v1/models`); the reconcile timer is cloud.ts's. */
  models: ModelRegistry;
  promotions: ModelPromotions;
  /** Newest heartbeat per site (`/v1/sites`). */
  sites: SiteStatusStore;
  health: () => { ok: boolean; [k: string]: unknown };
  /** Alert rules, alerts, silences, notifications (cloud/alerts/); routes are registered when present. */
  alerting?: Alerting;
  /** Audits sign-in failures (rate-limited per address); absent in tools that build a server without it. */
  signInAudit?: SignInAudit;
  /** Cloud to device: direct methods, device-bound messages, the collectors' channels (cloud/c2d/); routes are registered when present. */
  c2d?: CloudC2d;
  /** Failure predictions (twin `predictions`, `/v1/twins/{id}/predictions`) and model drift (`/v1/models/{name}/{version}/drift`). */
  predictions?: PredictionStore;
  drift?: DriftService;
}
