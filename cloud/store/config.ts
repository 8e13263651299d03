/** The cloud's `store` section: where its state lives (cloud/store/). */
import Type, { type Static } from 'typebox';
import { Section } from '../../common/config.js';

const int = (minimum: number, dflt: number) => Type.Integer({ minimum, default: dflt });

export const cloudStoreConfigSchema = Section({
  /**
   * `sqlite` (default): one file, `<stateDir>/twins.db`, one cloud process. `postgres`: a PostgreSQL
   * database shared by any number of API replicas (docs/deploy.md) — env EDGETWIN_STORE_KIND.
   */
  kind: Type.Enum(['sqlite', 'postgres'], { default: 'sqlite' }),
  /**
   * PostgreSQL connection URL, `postgres://user@host:5432/db?sslmode=require` — env EDGETWIN_STORE_URL.
   * Must reach a session (direct or a session-mode pooler): LISTEN and advisory locks need one.
   */
  url: Type.String({ pattern: '^(|postgres(ql)?://.+)$', default: '' }),
  /** File holding the password (mode 600) — env EDGETWIN_STORE_PASSWORD_FILE; or env EDGETWIN_STORE_PASSWORD / PGPASSWORD. Never logged. */
  passwordFile: Type.String({ default: '' }),
  /** Pooled connections per replica (PostgreSQL). */
  poolMax: Type.Integer({ minimum: 1, maximum: 200, default: 10 }),
  /** Of those, opened at start and kept open while idle (capped at poolMax): no request waits for a new backend. */
  poolMin: Type.Integer({ minimum: 0, maximum: 200, default: 10 }),
  connectTimeoutMs: int(100, 2000),
  /** Longest one statement may run, lock waits included; past it the request answers 503 (STORE_UNAVAILABLE). */
  statementTimeoutMs: int(100, 4000),
  /** Wake-ups to other replicas are merged over this window into one NOTIFY. */
  notifyBatchMs: int(0, 5),
  /** Change-feed rows (`GET /v1/stream` resume with Last-Event-ID) are kept this long. */
  changeRetentionMs: int(60_000, 24 * 3600_000),
  /** Replicas re-read the change feed this often even without a wake-up. */
  changePollMs: int(50, 1000),
  /** A replica tries to take a free lease (the lakehouse writer) this often: the takeover time after a leader dies. */
  leaseRetryMs: int(100, 1000),
});
export type CloudStoreConfig = Static<typeof cloudStoreConfigSchema>;

export const cloudStoreEnv = {
  EDGETWIN_STORE_KIND: 'store.kind',
  EDGETWIN_STORE_URL: 'store.url',
  EDGETWIN_STORE_PASSWORD_FILE: 'store.passwordFile',
} as const;
