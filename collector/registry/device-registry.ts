/**
 * The collector's device registry (SQLite): who may connect and with what credential. A device
 * has one of three credentials:
 * - `sas`: a 32-byte symmetric key; the device presents an IoT Hub SAS token signed with it. The
 *   key itself must be kept (HMAC needs it), so the file is created mode 600 in a 700 directory.
 * - `password`: only an scrypt hash is kept.
 * - `x509`: a TLS client certificate signed by the listener's CA whose CN is the device id.
 *
 * Every change bumps a generation counter in the same transaction; the running collector polls it
 * (cheap) to notice revocations made by `edgetwin collector devices revoke` in another process.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { DEVICE_ID_PATTERN } from '../../common/wire/record.js';
import { MetaStore, openDatabase, type SqliteDb } from '../../common/sqlite.js';

export type DeviceCredential = 'sas' | 'password' | 'x509';

export interface DeviceRecord {
  id: string;
  credential: DeviceCredential;
  /** Base64 symmetric key (credential `sas`). */
  key: string | null;
  /** `scrypt$N$r$p$salt$hash` (credential `password`). */
  passwordHash: string | null;
  status: 'active' | 'revoked';
  createdAt: number;
  revokedAt: number | null;
}

export type DeviceSummary = Omit<DeviceRecord, 'key' | 'passwordHash'>;

export interface AddedDevice {
  id: string;
  credential: DeviceCredential;
  /** Shown once: the registry keeps the key (sas) but only a hash of the password. */
  key?: string;
  password?: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS devices (
  id TEXT PRIMARY KEY,
  credential TEXT NOT NULL,
  key TEXT,
  password_hash TEXT,
  status TEXT NOT NULL DEFAULT 'active',
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);
`;

const SCRYPT: ScryptOptions & { N: number; r: number; p: number } = { N: 16384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const deviceIdRe = new RegExp(DEVICE_ID_PATTERN);

function scrypt(password: string, salt: Buffer, opts: typeof SCRYPT): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCb(password, salt, 32, opts, (err, key) => (err ? reject(err) : resolve(key))));
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scrypt(password, salt, SCRYPT);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [alg, n, r, p, salt, hash] = stored.split('$');
  if (alg !== 'scrypt' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64');
  const got = await scrypt(password, Buffer.from(salt, 'base64'), { N: Number(n), r: Number(r), p: Number(p), maxmem: SCRYPT.maxmem });
  return got.length === expected.length && timingSafeEqual(got, expected);
}

/** Creates the file owner-only before SQLite opens it (its -wal/-shm files inherit the mode). */
function createPrivate(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  if (!existsSync(path)) closeSync(openSync(path, 'a', 0o600));
  chmodSync(path, 0o600);
}

export class DeviceRegistry {
  private readonly db: SqliteDb;
  private readonly meta: MetaStore;
  private readonly getStmt;
  private readonly genStmt;

  constructor(
    readonly path: string,
    log?: Logger,
  ) {
    createPrivate(path);
    this.db = openDatabase({ path, synchronous: 'full', log, schema: SCHEMA }).db;
    chmodSync(path, 0o600);
    this.meta = new MetaStore(this.db);
    this.getStmt = this.db.prepare<
      [string],
      {
        id: string;
        credential: DeviceCredential;
        key: string | null;
        password_hash: string | null;
        status: 'active' | 'revoked';
        created_at: number;
        revoked_at: number | null;
      }
    >('SELECT * FROM devices WHERE id = ?');
    this.genStmt = this.db.prepare<[], { v: number }>("SELECT v FROM meta WHERE k = 'generation'");
  }

  async add(id: string, credential: DeviceCredential, password?: string): Promise<AddedDevice> {
    if (!deviceIdRe.test(id))
      throw new EdgetwinError(ErrorCodes.USAGE, `device id "${id}" does not follow IoT Hub's rules (${DEVICE_ID_PATTERN})`);
    const existing = this.get(id);
    if (existing?.status === 'active')
      throw new EdgetwinError(ErrorCodes.USAGE, `device "${id}" already exists; revoke it first to replace its credential`);
    const out: AddedDevice = { id, credential };
    let key: string | null = null;
    let hash: string | null = null;
    if (credential === 'sas') key = out.key = randomBytes(32).toString('base64');
    if (credential === 'password') {
      out.password = password ?? randomBytes(18).toString('base64url');
      hash = await hashPassword(out.password);
    }
    this.change(() =>
      this.db
        .prepare(
          'INSERT OR REPLACE INTO devices (id, credential, key, password_hash, status, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, NULL)',
        )
        .run(id, credential, key, hash, 'active', Date.now()),
    );
    return out;
  }

  /** Returns false when there was no active device of that id. */
  revoke(id: string): boolean {
    return this.change(() => {
      const r = this.db
        .prepare(
          "UPDATE devices SET status = 'revoked', revoked_at = ?, key = NULL, password_hash = NULL WHERE id = ? AND status = 'active'",
        )
        .run(Date.now(), id);
      return r.changes > 0;
    });
  }

  private change<T>(fn: () => T): T {
    return this.db.transaction(() => {
      const out = fn();
      this.meta.set('generation', this.meta.get('generation') + 1);
      return out;
    })();
  }

  get(id: string): DeviceRecord | undefined {
    const r = this.getStmt.get(id);
    if (!r) return undefined;
    return {
      id: r.id,
      credential: r.credential,
      key: r.key,
      passwordHash: r.password_hash,
      status: r.status,
      createdAt: r.created_at,
      revokedAt: r.revoked_at,
    };
  }

  isActive(id: string): boolean {
    return this.getStmt.get(id)?.status === 'active';
  }

  list(): DeviceSummary[] {
    return this.db
      .prepare<
        [],
        { id: string; credential: DeviceCredential; status: 'active' | 'revoked'; created_at: number; revoked_at: number | null }
      >('SELECT id, credential, status, created_at, revoked_at FROM devices ORDER BY id')
      .all()
      .map((r) => ({ id: r.id, credential: r.credential, status: r.status, createdAt: r.created_at, revokedAt: r.revoked_at }));
  }

  /** Changes whenever a device is added or revoked, by this process or another. */
  generation(): number {
    return this.genStmt.get()?.v ?? 0;
  }

  close(): void {
    this.db.close();
  }
}
