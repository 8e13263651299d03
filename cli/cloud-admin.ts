/**
 * `edgetwin cloud tokens create|list|revoke`, `edgetwin cloud compact|retention` and `backfill`: administration
 * of a cloud's state directory, run beside (or without) the daemon. Token changes reach a running
 * cloud within a second; compaction and retention take the lakehouse maintenance lock, so they never
 * run at the same time as the daemon's own schedule.
 */
import { userInfo } from 'node:os';
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
import { Progress, progressModeFromEnv } from '../common/progress.js';
import { backfillSubcommand, runBackfill } from './backfill.js';
import { HELP_OPTION, parseSubcommand, str, usage, type OptionTable, type Subcommand } from './args.js';

const COMMON: OptionTable = {
  config: { type: 'string', value: 'FILE', help: 'cloud config (stateDir, lakehouse.root, retention)', default: 'built-in defaults plus environment overrides' },
  json: { type: 'boolean', help: 'machine-readable output on stdout' },
  ...HELP_OPTION,
};

const SUBS: Record<string, Subcommand> = {
  tokens: {
    usage: 'Usage: edgetwin cloud tokens <create|list|revoke> [options]',
    about: `  create      create an API token and print it (shown once; stored hashed)
  list        tokens with id, name, role, site and status (never the token)
  revoke ID   revoke a token; a running cloud refuses it within 1 s

Run 'edgetwin cloud tokens <create|list|revoke> --help' for each one's options.`,
    options: HELP_OPTION,
    group: true,
  },
  'tokens create': {
    usage: 'Usage: edgetwin cloud tokens create --role ROLE [--site S] [--name TEXT] [options]',
    about: 'Creates an API token and prints it once (only its hash is stored).',
    options: {
      role: { type: 'string', value: 'ROLE', help: `${ROLES.join(' | ')}`, required: true },
      site: { type: 'string', value: 'SITE', help: 'scope the token to one site (needed for the collector role)', default: 'all sites' },
      name: { type: 'string', value: 'TEXT', help: 'a label shown by tokens list', default: 'generated from the role' },
      ...COMMON,
    },
  },
  'tokens list': { usage: 'Usage: edgetwin cloud tokens list [options]', about: 'Lists tokens with id, name, role, site and status (never the token itself).', options: COMMON },
  'tokens revoke': { usage: 'Usage: edgetwin cloud tokens revoke ID [options]', about: 'Revokes a token (ID from tokens list); a running cloud refuses it within 1 s.', options: COMMON, args: ['ID'] },
  compact: {
    usage: 'Usage: edgetwin cloud compact [--table T] [options]',
    about: 'Merges small Parquet files per partition (gold rollups re-aggregated), beside a running cloud or without it.',
    footer: 'Progress goes to stderr: a bar on a terminal, lines otherwise (EDGETWIN_PROGRESS).',
    options: { table: { type: 'string', value: 'T', help: TABLE_NAMES.join(' | '), default: 'all tables' }, ...COMMON },
  },
  backfill: backfillSubcommand,
  retention: {
    usage: 'Usage: edgetwin cloud retention [--dry-run] [options]',
    about: 'Deletes partitions older than lakehouse.retention.* days, and batch ids older than ingest.batchIdRetentionDays.',
    options: { 'dry-run': { type: 'boolean', help: 'list what would be removed, remove nothing' }, ...COMMON },
  },
};

const cliPrincipal = () => ({ id: 'cli', name: `cli:${userInfo().username}`, role: 'admin' as const, site: null });

type Print = (human: string, data: unknown) => void;

export async function runCloudAdmin(argv: string[], out: (s: string) => void = (s) => process.stdout.write(`${s}\n`)): Promise<void> {
  const picked = parseSubcommand('edgetwin cloud', argv, SUBS, out);
  if (!picked) return;
  const { key, values, positionals } = picked;
  // Backfill talks to a running cloud over HTTP: it needs no config of its own.
  if (key === 'backfill') {
    const r = await runBackfill(values, out);
    return out(`backfilled ${r.readings} readings from ${r.rows} rows in ${r.posts} posts${r.refused ? `; ${r.refused} rows refused` : ''}`);
  }
  const cfg = loadCloudConfig(str(values, 'config'));
  const print: Print = (human, data) => out(values['json'] ? JSON.stringify(data) : human);
  if (key.startsWith('tokens ')) return tokens(cfg, key.slice(7), positionals, { role: str(values, 'role'), site: str(values, 'site'), name: str(values, 'name') }, print);
  if (key === 'compact') return compactCmd(cfg, str(values, 'table'), print);
  return retentionCmd(cfg, values['dry-run'] === true, print);
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
        if (!values.role || !ROLES.includes(values.role as Role)) usage(`edgetwin cloud tokens create needs --role ${ROLES.join('|')}${values.role ? `, got "${values.role}"` : ''}`);
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
  if (table !== undefined && !TABLE_NAMES.includes(table as TableName)) usage(`edgetwin cloud compact: --table must be one of ${TABLE_NAMES.join(', ')}, got "${table}"`);
  const db = openCloudDb(cfg.stateDir);
  const cursor = db.meta.get('lake_cursor');
  db.close();
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
        { cursor, minFiles: c.minFiles, targetFileBytes: c.targetFileBytes, closedBefore: new Date().toISOString().slice(0, 10), ...(table ? { tables: [table as TableName] } : {}) },
        log,
        (done, total) => progress.update(done, `${done}/${total} runs merged`, false, total),
      ),
    );
    if (report) progress.done(report.merged, `${report.merged} runs merged`);
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
