/**
 * The work behind `edgetwin cloud <tokens|compact|retention|backfill|migrate|setup-db|audit>` once
 * cli/cloud-admin.ts has parsed the command line (loaded lazily: it pulls in the cloud's modules).
 */
import { userInfo } from 'node:os';
import type { AuditLog } from '../cloud/audit/audit-log.js';
import type { Principal, Role, TokenInfo, TokenStore } from '../cloud/auth/tokens.js';
import type { CloudConfig } from '../cloud/config.js';
import type { TableName } from '../cloud/lakehouse/layout.js';
import type { Store, Tx } from '../cloud/store/store.js';
import { EdgetwinError, ErrorCodes } from '../common/errors.js';
import { str, usage, type OptionValues } from './args.js';

// Each subcommand imports its own modules in its branch: importing them all up front cost every
// run (even a usage error) about 1.3 s of CPU, most of it backfill's and the store's dependencies.

/** `90d`, `12h`, `30m` → ms; a usage error otherwise. */
function parseDuration(v: string, name: string): number {
  const m = /^(\d{1,6})([mhd])$/.exec(v);
  if (!m || Number(m[1]) === 0) usage(`${name} must be <n>m, <n>h or <n>d (e.g. 90d), got "${v}"`);
  return Number(m[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'm' | 'h' | 'd'];
}

const cliPrincipal = () => ({ id: 'cli', name: `cli:${userInfo().username}`, role: 'admin' as const, site: null });

type Print = (human: string, data: unknown) => void;

export async function runCloudAdminCommand(
  picked: { key: string; values: OptionValues; positionals: string[] },
  out: (s: string) => void,
): Promise<void> {
  const { key, values, positionals } = picked;
  // Backfill talks to a running cloud over HTTP: it needs no config of its own.
  if (key === 'backfill') {
    const { runBackfill } = await import('./backfill.js');
    const r = await runBackfill(values, out);
    out(
      `backfill: ${r.readings} readings from ${r.rows} rows in ${r.posts} posts: ${r.stored} stored, ${r.duplicates} duplicates ` +
        `(already stored), ${r.quarantined} quarantined, ${r.rejected} messages rejected${r.refused ? `; ${r.refused} rows refused` : ''}`,
    );
    // "Backfilled N readings" while the cloud stored none (all duplicates, all quarantined) misled users: a run that stored nothing fails.
    if (r.stored === 0)
      throw new EdgetwinError(
        ErrorCodes.SINK,
        'backfill stored nothing: every reading was a duplicate, quarantined or rejected (see the counts above)',
      );
    return;
  }
  // Mistakes in the arguments alone are reported before the config (and its ~1 s of schema
  // modules) loads: a usage error answers at once.
  const tokenArgs = {
    role: str(values, 'role'),
    site: str(values, 'site'),
    name: str(values, 'name'),
    expiresIn: str(values, 'expires-in'),
  };
  const expiresAt = key.startsWith('tokens ') ? await checkTokenArgs(key.slice(7), positionals, tokenArgs) : null;
  const table = str(values, 'table');
  if (key === 'compact') {
    const { TABLE_NAMES } = await import('../cloud/lakehouse/layout.js');
    if (table !== undefined && !TABLE_NAMES.includes(table as TableName))
      usage(`edgetwin cloud compact: --table must be one of ${TABLE_NAMES.join(', ')}, got "${table}"`);
  }
  if (key === 'migrate' && str(values, 'to') !== 'postgres')
    usage(`edgetwin cloud migrate: --to must be postgres, got "${str(values, 'to') ?? ''}"`);
  const { loadCloudConfig } = await import('../cloud/config.js');
  const cfg = loadCloudConfig(str(values, 'config'));
  const print: Print = (human, data) => out(values['json'] ? JSON.stringify(data) : human);
  if (key.startsWith('tokens ')) return tokens(cfg, key.slice(7), positionals, tokenArgs, expiresAt, print);
  if (key === 'compact') return compactCmd(cfg, table, print);
  if (key === 'setup-db') {
    const { appPassword, describeSetupDb, setupDb } = await import('./cloud-setup-db.js');
    const r = await setupDb(cfg, {
      url: str(values, 'url'),
      appRole: str(values, 'app-role'),
      appPassword: appPassword(str(values, 'app-password-file')),
    });
    return print(describeSetupDb(r), r);
  }
  if (key === 'migrate') return migrateCmd(cfg, str(values, 'to'), str(values, 'url'), print);
  if (key === 'audit verify') {
    const { auditExportDir, runAuditVerify } = await import('./cloud-audit.js');
    return runAuditVerify(str(values, 'dir') ?? auditExportDir(cfg), print);
  }
  return retentionCmd(cfg, values['dry-run'] === true, print);
}

async function migrateCmd(cfg: CloudConfig, to: string | undefined, url: string | undefined, print: Print): Promise<void> {
  if (to !== 'postgres') usage(`edgetwin cloud migrate: --to must be postgres, got "${to ?? ''}"`); // checked before the config too
  const [{ Progress, progressModeFromEnv }, { migrateToPostgres }] = await Promise.all([
    import('../common/progress.js'),
    import('./cloud-migrate.js'),
  ]);
  const progress = new Progress('migrate', 0, { mode: progressModeFromEnv() });
  const report = await migrateToPostgres(cfg, { url, progress: (table, n) => progress.update(n, `${table}: ${n} rows`, false) });
  progress.done(
    report.tables.reduce((n, t) => n + t.copied, 0),
    'copied',
  );
  const lines = report.tables.map(
    (t) =>
      `${t.table.padEnd(24)} sqlite ${String(t.source).padStart(9)}  postgres ${String(t.target).padStart(9)}${t.source === t.target ? '' : '  MISMATCH'}`,
  );
  lines.push(
    report.ok ? `${report.resumed ? 'resumed; ' : ''}every table's row count matches` : 'row counts differ: run it again (it resumes)',
  );
  print(lines.join('\n'), report);
  if (!report.ok) throw new EdgetwinError(ErrorCodes.STORE_CORRUPT, 'migrate: row counts differ between SQLite and PostgreSQL');
}

/** The cloud's store as a tool opens it: SQLite keeps the file's journal mode (the daemon's choice). */
async function openToolStore(cfg: CloudConfig): Promise<Store> {
  const { openStore } = await import('../cloud/store/open-store.js');
  return openStore({ stateDir: cfg.stateDir, store: cfg.store });
}

/** Creates a token and its `token.create` audit entry in the caller's transaction (the CLI, and bench/chaos's cluster). */
export async function createTokenAudited(
  tx: Tx,
  tokens: TokenStore,
  audit: AuditLog,
  who: Principal,
  spec: { role: Role; site: string | null; name?: string; expiresAt: number | null },
): Promise<{ token: string; info: TokenInfo }> {
  const c = await tokens.create({ ...spec, createdBy: who.name }, tx);
  await audit.record(
    tx,
    who,
    'token.create',
    { site: c.info.site },
    { id: c.info.id, name: c.info.name, role: c.info.role, expiresAt: spec.expiresAt },
  );
  return c;
}

type TokenArgs = { role?: string | undefined; site?: string | undefined; name?: string | undefined; expiresIn?: string | undefined };

/** The usage errors of `tokens <action>` (in the order they always had); the expiry time otherwise. */
async function checkTokenArgs(action: string | undefined, extra: string[], values: TokenArgs): Promise<number | null> {
  const expiresAt = values.expiresIn === undefined ? null : Date.now() + parseDuration(values.expiresIn, '--expires-in');
  if (action === 'create') {
    const { ROLES } = await import('../cloud/auth/tokens.js');
    if (extra.length > 0) usage(`unexpected arguments: ${extra.join(' ')}`);
    if (!values.role || !ROLES.includes(values.role as Role))
      usage(`edgetwin cloud tokens create needs --role ${ROLES.join('|')}${values.role ? `, got "${values.role}"` : ''}`);
  } else if (action === 'revoke') {
    if (!extra[0] || extra.length > 1) usage('tokens revoke needs exactly one token id (see tokens list)');
  } else if (action !== 'list') usage('tokens needs create, list or revoke');
  return expiresAt;
}

async function tokens(
  cfg: CloudConfig,
  action: string | undefined,
  extra: string[],
  values: TokenArgs,
  expiresAt: number | null,
  print: (human: string, data: unknown) => void,
): Promise<void> {
  const [{ TokenStore }, { AuditLog }] = await Promise.all([import('../cloud/auth/tokens.js'), import('../cloud/audit/audit-log.js')]);
  const db = await openToolStore(cfg);
  try {
    const store = new TokenStore(db);
    const audit = new AuditLog(db);
    const who = cliPrincipal();
    switch (action) {
      case 'create': {
        const created = await db.tx((tx) =>
          createTokenAudited(tx, store, audit, who, {
            role: values.role as Role,
            site: values.site ?? null,
            ...(values.name ? { name: values.name } : {}),
            expiresAt,
          }),
        );
        print(
          `token ${created.info.id} (${created.info.role}${created.info.site ? `, site ${created.info.site}` : ''}${expiresAt ? `, expires ${new Date(expiresAt).toISOString()}` : ''}):\n${created.token}\nShown once: store it now (e.g. in EDGETWIN_CLOUD_TOKEN for a collector).`,
          { token: created.token, ...created.info },
        );
        return;
      }
      case 'list': {
        const list = await store.list();
        const lines = list.map(
          (t) =>
            `${t.id}  ${t.role.padEnd(9)} ${(t.site ?? '*').padEnd(16)} ${t.revokedAt ? 'revoked' : t.expiresAt !== null && t.expiresAt !== undefined && t.expiresAt <= Date.now() ? 'expired' : 'active '}  ${t.name}  (created ${t.createdAt} by ${t.createdBy}${t.expiresAt ? `; expires ${new Date(t.expiresAt).toISOString()}` : ''})`,
        );
        print(lines.length ? lines.join('\n') : 'no tokens (a loopback-only cloud serves every request as admin until one exists)', list);
        return;
      }
      case 'revoke': {
        const id = extra[0]!; // checkTokenArgs: exactly one
        const revoked = await db.tx(async (tx) => {
          const ok = await store.revoke(id, tx);
          if (ok) await audit.record(tx, who, 'token.revoke', {}, { id });
          return ok;
        });
        if (!revoked) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no active token with id ${id}`);
        print(`token ${id} revoked`, { id, revoked: true });
        return;
      }
      default:
        usage('tokens needs create, list or revoke');
    }
  } finally {
    await db.close();
  }
}

async function compactCmd(cfg: CloudConfig, table: string | undefined, print: (human: string, data: unknown) => void): Promise<void> {
  const db = await openToolStore(cfg);
  const cursor = (await db.get<{ v: number }>("SELECT v FROM meta WHERE k = 'lake_cursor'"))?.v ?? 0;
  await db.close();
  const [{ lakehouseRoot }, { withMaintenanceLock }, { compact }, { Duck }, { createLogger }, { Progress, progressModeFromEnv }] =
    await Promise.all([
      import('../cloud/config.js'),
      import('../cloud/lakehouse/layout.js'),
      import('../cloud/lakehouse/compaction.js'),
      import('../cloud/lakehouse/duckdb.js'),
      import('../common/log.js'),
      import('../common/progress.js'),
    ]);
  const root = lakehouseRoot(cfg);
  const duck = await Duck.open({ threads: cfg.lakehouse.duckdbThreads, memoryLimitMb: cfg.lakehouse.duckdbMemoryLimitMb }, 1);
  try {
    const log = createLogger('cloud-compact', { level: 'warn' });
    const c = cfg.lakehouse.compaction;
    const progress = new Progress('compact', 0, { mode: progressModeFromEnv() });
    const report = await withMaintenanceLock(root, () =>
      compact(
        root,
        duck,
        {
          cursor,
          minFiles: c.minFiles,
          targetFileBytes: c.targetFileBytes,
          closedBefore: new Date().toISOString().slice(0, 10),
          ...(table ? { tables: [table as TableName] } : {}),
        },
        log,
        (done, total) => progress.update(done, `${done}/${total} runs merged`, false, total),
      ),
    );
    if (report) progress.done(report.merged, `${report.merged} runs merged`);
    if (!report)
      throw new EdgetwinError(ErrorCodes.LAKEHOUSE, `another process is compacting or applying retention in ${root}; try again later`);
    print(`merged ${report.inputFiles} files into ${report.merged}; removed ${report.removedLeftovers} leftover files`, report);
  } finally {
    duck.close();
  }
}

async function retentionCmd(cfg: CloudConfig, dryRun: boolean, print: (human: string, data: unknown) => void): Promise<void> {
  const [{ lakehouseRoot }, { withMaintenanceLock }, { applyRetention }, { createLogger }] = await Promise.all([
    import('../cloud/config.js'),
    import('../cloud/lakehouse/layout.js'),
    import('../cloud/lakehouse/retention.js'),
    import('../common/log.js'),
  ]);
  const db = await openToolStore(cfg);
  const root = lakehouseRoot(cfg);
  try {
    const log = createLogger('cloud-retention', { level: 'warn' });
    const report = await withMaintenanceLock(root, async () =>
      applyRetention(root, cfg.lakehouse.retention, { db, batchIdRetentionDays: cfg.ingest.batchIdRetentionDays }, log, { dryRun }),
    );
    if (!report)
      throw new EdgetwinError(ErrorCodes.LAKEHOUSE, `another process is compacting or applying retention in ${root}; try again later`);
    const lines = report.partitionsRemoved.map((p) => `${dryRun ? 'would remove' : 'removed'} ${p.table} site=${p.site} date=${p.date}`);
    lines.push(
      `${report.partitionsRemoved.length} partitions${dryRun ? ' would be' : ''} removed; ${report.batchIdsForgotten} batch ids forgotten`,
    );
    print(lines.join('\n'), report);
  } finally {
    await db.close();
  }
}
