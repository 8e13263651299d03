/**
 * `edgetwin cloud tokens create|list|revoke` and `edgetwin cloud compact|retention`: administration
 * of a cloud's state directory, run beside (or without) the daemon. Token changes reach a running
 * cloud within a second; compaction and retention take the lakehouse maintenance lock, so they never
 * run at the same time as the daemon's own schedule.
 */
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { AuditLog } from '../cloud/audit-log.js';
import { ROLES, TokenStore, type Role } from '../cloud/auth/tokens.js';
import { lakehouseRoot, loadCloudConfig, type CloudConfig } from '../cloud/config.js';
import { openCloudDb } from '../cloud/db.js';
import { compact } from '../cloud/lakehouse/compaction.js';
import { Duck } from '../cloud/lakehouse/duckdb.js';
import { TABLE_NAMES, withMaintenanceLock, type TableName } from '../cloud/lakehouse/layout.js';
import { applyRetention } from '../cloud/lakehouse/retention.js';
import { EdgetwinError, ErrorCodes } from '../common/errors.js';
import { createLogger } from '../common/log.js';

export const CLOUD_ADMIN_HELP = `Usage: edgetwin cloud tokens <create|list|revoke> [options]
       edgetwin cloud compact [--table T] [options]
       edgetwin cloud retention [--dry-run] [options]

  tokens create   create an API token and print it (shown once; stored hashed)
                  --role viewer|operator|admin|collector (required), --site S (scope; required
                  for collector), --name TEXT
  tokens list     tokens with id, name, role, site and status (never the token)
  tokens revoke ID
                  revoke a token; a running cloud refuses it within 1 s
  compact         merge small Parquet files (per partition; gold rollups re-aggregated)
                  --table ${TABLE_NAMES.join('|')} (default: all)
  retention       delete partitions older than lakehouse.retention.* days; --dry-run lists them

Options:
  --config FILE   cloud config (stateDir, lakehouse.root, retention)
  --json          machine-readable output`;

function usage(msg: string): never {
  throw new EdgetwinError(ErrorCodes.USAGE, msg);
}

const cliPrincipal = () => ({ id: 'cli', name: `cli:${userInfo().username}`, role: 'admin' as const, site: null });

export async function runCloudAdmin(argv: string[], out: (s: string) => void = (s) => process.stdout.write(`${s}\n`)): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      role: { type: 'string' },
      site: { type: 'string' },
      name: { type: 'string' },
      table: { type: 'string' },
      'dry-run': { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, action, ...extra] = positionals;
  if (values.help || !command) return out(CLOUD_ADMIN_HELP);
  const cfg = loadCloudConfig(values.config);
  const print = (human: string, data: unknown): void => out(values.json ? JSON.stringify(data) : human);
  if (command === 'tokens') return tokens(cfg, action, extra, values, print);
  if (extra.length > 0 || (action !== undefined && command !== 'tokens')) usage(`unexpected arguments: ${[action, ...extra].filter(Boolean).join(' ')}`);
  if (command === 'compact') return compactCmd(cfg, values.table, print);
  if (command === 'retention') return retentionCmd(cfg, values['dry-run'] ?? false, print);
  usage(`unknown cloud subcommand "${command}"; run 'edgetwin cloud --help'`);
}

function tokens(
  cfg: CloudConfig,
  action: string | undefined,
  extra: string[],
  values: { role?: string | undefined; site?: string | undefined; name?: string | undefined },
  print: (human: string, data: unknown) => void,
): void {
  const db = openCloudDb(cfg.stateDir);
  try {
    const store = new TokenStore(db.db);
    const audit = new AuditLog(db.db);
    const who = cliPrincipal();
    switch (action) {
      case 'create': {
        if (extra.length > 0) usage(`unexpected arguments: ${extra.join(' ')}`);
        if (!values.role || !ROLES.includes(values.role as Role)) usage(`tokens create needs --role ${ROLES.join('|')}`);
        const created = db.db.transaction(() => {
          const c = store.create({ role: values.role as Role, site: values.site ?? null, ...(values.name ? { name: values.name } : {}), createdBy: who.name });
          audit.record(who, 'token.create', { site: c.info.site }, { id: c.info.id, name: c.info.name, role: c.info.role });
          return c;
        })();
        print(
          `token ${created.info.id} (${created.info.role}${created.info.site ? `, site ${created.info.site}` : ''}):\n${created.token}\nShown once: store it now (e.g. in EDGETWIN_CLOUD_TOKEN for a collector).`,
          { token: created.token, ...created.info },
        );
        return;
      }
      case 'list': {
        const list = store.list();
        const lines = list.map((t) => `${t.id}  ${t.role.padEnd(9)} ${(t.site ?? '*').padEnd(16)} ${t.revokedAt ? 'revoked' : 'active '}  ${t.name}  (created ${t.createdAt} by ${t.createdBy})`);
        print(lines.length ? lines.join('\n') : 'no tokens (a loopback-only cloud serves every request as admin until one exists)', list);
        return;
      }
      case 'revoke': {
        const [id, ...more] = extra;
        if (!id || more.length > 0) usage('tokens revoke needs exactly one token id (see tokens list)');
        const revoked = db.db.transaction(() => {
          const ok = store.revoke(id);
          if (ok) audit.record(who, 'token.revoke', {}, { id });
          return ok;
        })();
        if (!revoked) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no active token with id ${id}`);
        print(`token ${id} revoked`, { id, revoked: true });
        return;
      }
      default:
        usage('tokens needs create, list or revoke');
    }
  } finally {
    db.close();
  }
}

async function compactCmd(cfg: CloudConfig, table: string | undefined, print: (human: string, data: unknown) => void): Promise<void> {
  if (table !== undefined && !TABLE_NAMES.includes(table as TableName)) usage(`--table must be one of ${TABLE_NAMES.join(', ')}`);
  const db = openCloudDb(cfg.stateDir);
  const cursor = db.meta.get('lake_cursor');
  db.close();
  const root = lakehouseRoot(cfg);
  const duck = await Duck.open({ threads: cfg.lakehouse.duckdbThreads, memoryLimitMb: cfg.lakehouse.duckdbMemoryLimitMb }, 1);
  try {
    const log = createLogger('cloud-compact', { level: 'warn' });
    const c = cfg.lakehouse.compaction;
    const report = await withMaintenanceLock(root, () =>
      compact(root, duck, { cursor, minFiles: c.minFiles, targetFileBytes: c.targetFileBytes, closedBefore: new Date().toISOString().slice(0, 10), ...(table ? { tables: [table as TableName] } : {}) }, log),
    );
    if (!report) throw new EdgetwinError(ErrorCodes.LAKEHOUSE, `another process is compacting or applying retention in ${root}; try again later`);
    print(`merged ${report.inputFiles} files into ${report.merged}; removed ${report.removedLeftovers} leftover files`, report);
  } finally {
    duck.close();
  }
}

async function retentionCmd(cfg: CloudConfig, dryRun: boolean, print: (human: string, data: unknown) => void): Promise<void> {
  const db = openCloudDb(cfg.stateDir);
  const root = lakehouseRoot(cfg);
  try {
    const log = createLogger('cloud-retention', { level: 'warn' });
    const report = await withMaintenanceLock(root, async () =>
      applyRetention(root, cfg.lakehouse.retention, { db: db.db, batchIdRetentionDays: cfg.ingest.batchIdRetentionDays }, log, { dryRun }),
    );
    if (!report) throw new EdgetwinError(ErrorCodes.LAKEHOUSE, `another process is compacting or applying retention in ${root}; try again later`);
    const lines = report.partitionsRemoved.map((p) => `${dryRun ? 'would remove' : 'removed'} ${p.table} site=${p.site} date=${p.date}`);
    lines.push(`${report.partitionsRemoved.length} partitions${dryRun ? ' would be' : ''} removed; ${report.batchIdsForgotten} batch ids forgotten`);
    print(lines.join('\n'), report);
  } finally {
    db.close();
  }
}
