/**
 * The work behind `edgetwin cloud <tokens|compact|retention|backfill|migrate|setup-db|audit>` once
 * cli/cloud-admin.ts has parsed the command line (loaded lazily: it pulls in the cloud's modules).
 */
import { userInfo } from 'node:os';
import { AuditLog } from '../cloud/audit/audit-log.js';
import { ROLES, TokenStore, type Role } from '../cloud/auth/tokens.js';
import { lakehouseRoot, loadCloudConfig, type CloudConfig } from '../cloud/config.js';
import { openStore } from '../cloud/store/open-store.js';
import type { Store } from '../cloud/store/store.js';
import { compact } from '../cloud/lakehouse/compaction.js';
import { Duck } from '../cloud/lakehouse/duckdb.js';
import { TABLE_NAMES, withMaintenanceLock, type TableName } from '../cloud/lakehouse/layout.js';
import { applyRetention } from '../cloud/lakehouse/retention.js';
import { EdgetwinError, ErrorCodes } from '../common/errors.js';
import { createLogger } from '../common/log.js';
import { Progress, progressModeFromEnv } from '../common/progress.js';
import { runBackfill } from './backfill.js';
import { auditExportDir, runAuditVerify } from './cloud-audit.js';
import { migrateToPostgres } from './cloud-migrate.js';
import { appPassword, describeSetupDb, setupDb } from './cloud-setup-db.js';
import { str, usage, type OptionValues } from './args.js';

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
  const cfg = loadCloudConfig(str(values, 'config'));
  const print: Print = (human, data) => out(values['json'] ? JSON.stringify(data) : human);
  if (key.startsWith('tokens '))
    return tokens(
      cfg,
      key.slice(7),
      positionals,
      { role: str(values, 'role'), site: str(values, 'site'), name: str(values, 'name'), expiresIn: str(values, 'expires-in') },
      print,
    );
  if (key === 'compact') return compactCmd(cfg, str(values, 'table'), print);
  if (key === 'setup-db') {
    const r = await setupDb(cfg, {
      url: str(values, 'url'),
      appRole: str(values, 'app-role'),
      appPassword: appPassword(str(values, 'app-password-file')),
    });
    return print(describeSetupDb(r), r);
  }
  if (key === 'migrate') return migrateCmd(cfg, str(values, 'to'), str(values, 'url'), print);
  if (key === 'audit verify') return runAuditVerify(str(values, 'dir') ?? auditExportDir(cfg), print);
  return retentionCmd(cfg, values['dry-run'] === true, print);
}

async function migrateCmd(cfg: CloudConfig, to: string | undefined, url: string | undefined, print: Print): Promise<void> {
  if (to !== 'postgres') usage(`edgetwin cloud migrate: --to must be postgres, got "${to ?? ''}"`);
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
function openToolStore(cfg: CloudConfig): Promise<Store> {
  return openStore({ stateDir: cfg.stateDir, store: cfg.store });
}

async function tokens(
  cfg: CloudConfig,
  action: string | undefined,
  extra: string[],
  values: { role?: string | undefined; site?: string | undefined; name?: string | undefined; expiresIn?: string | undefined },
  print: (human: string, data: unknown) => void,
): Promise<void> {
  const expiresAt = values.expiresIn === undefined ? null : Date.now() + parseDuration(values.expiresIn, '--expires-in');
  const db = await openToolStore(cfg);
  try {
    const store = new TokenStore(db);
    const audit = new AuditLog(db);
    const who = cliPrincipal();
    switch (action) {
      case 'create': {
        if (extra.length > 0) usage(`unexpected arguments: ${extra.join(' ')}`);
        if (!values.role || !ROLES.includes(values.role as Role))
          usage(`edgetwin cloud tokens create needs --role ${ROLES.join('|')}${values.role ? `, got "${values.role}"` : ''}`);
        const created = await db.tx(async (tx) => {
          const c = await store.create(
            {
              role: values.role as Role,
              site: values.site ?? null,
              ...(values.name ? { name: values.name } : {}),
              createdBy: who.name,
              expiresAt,
            },
            tx,
          );
          await audit.record(
            tx,
            who,
            'token.create',
            { site: c.info.site },
            { id: c.info.id, name: c.info.name, role: c.info.role, expiresAt },
          );
          return c;
        });
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
        const [id, ...more] = extra;
        if (!id || more.length > 0) usage('tokens revoke needs exactly one token id (see tokens list)');
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
  if (table !== undefined && !TABLE_NAMES.includes(table as TableName))
    usage(`edgetwin cloud compact: --table must be one of ${TABLE_NAMES.join(', ')}, got "${table}"`);
  const db = await openToolStore(cfg);
  const cursor = (await db.get<{ v: number }>("SELECT v FROM meta WHERE k = 'lake_cursor'"))?.v ?? 0;
  await db.close();
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
