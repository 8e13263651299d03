/**
 * `edgetwin cloud tokens create|list|revoke`, `edgetwin cloud compact|retention` and `backfill`: administration
 * of a cloud's state directory, run beside (or without) the daemon. Token changes reach a running
 * cloud within a second; compaction and retention take the lakehouse maintenance lock, so they never
 * run at the same time as the daemon's own schedule.
 */
import { ROLES } from '../cloud/auth/tokens.js';
import { TABLE_NAMES } from '../cloud/lakehouse/layout.js';
import { HELP_OPTION, parseSubcommand, type OptionTable, type Subcommand } from './args.js';
import { backfillSubcommand } from './backfill-options.js';
import { auditSubcommands } from './cloud-audit.js';
import { setupDbSubcommand } from './cloud-setup-db.js';

const COMMON: OptionTable = {
  config: {
    type: 'string',
    value: 'FILE',
    help: 'cloud config (stateDir, lakehouse.root, retention)',
    default: 'built-in defaults plus environment overrides',
  },
  json: { type: 'boolean', help: 'machine-readable output on stdout' },
  ...HELP_OPTION,
};

const SUBS: Record<string, Subcommand> = {
  ...auditSubcommands,
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
      'expires-in': {
        type: 'string',
        value: 'N<m|h|d>',
        help: 'the token stops working after this long (e.g. 90d, 12h)',
        default: 'never',
      },
      ...COMMON,
    },
  },
  'tokens list': {
    usage: 'Usage: edgetwin cloud tokens list [options]',
    about: 'Lists tokens with id, name, role, site and status (never the token itself).',
    options: COMMON,
  },
  'tokens revoke': {
    usage: 'Usage: edgetwin cloud tokens revoke ID [options]',
    about: 'Revokes a token (ID from tokens list); a running cloud refuses it within 1 s.',
    options: COMMON,
    args: ['ID'],
  },
  compact: {
    usage: 'Usage: edgetwin cloud compact [--table T] [options]',
    about: 'Merges small Parquet files per partition (gold rollups re-aggregated), beside a running cloud or without it.',
    footer: 'Progress goes to stderr: a bar on a terminal, lines otherwise (EDGETWIN_PROGRESS).',
    options: { table: { type: 'string', value: 'T', help: TABLE_NAMES.join(' | '), default: 'all tables' }, ...COMMON },
  },
  backfill: backfillSubcommand,
  migrate: {
    usage: 'Usage: edgetwin cloud migrate --to postgres [--url URL] [options]',
    about:
      "Copies this cloud's SQLite state (stateDir/twins.db) into PostgreSQL for a scale-out deployment; the cloud must be stopped. " +
      'Resumable: run it again after an interruption. Row counts of every table are checked.',
    options: {
      to: { type: 'string', value: 'KIND', help: 'postgres', required: true },
      url: {
        type: 'string',
        value: 'URL',
        help: 'postgres://user@host:5432/db (password: store.passwordFile, EDGETWIN_STORE_PASSWORD or PGPASSWORD)',
        default: 'store.url',
      },
      ...COMMON,
    },
  },
  'setup-db': setupDbSubcommand,
  retention: {
    usage: 'Usage: edgetwin cloud retention [--dry-run] [options]',
    about: 'Deletes partitions older than lakehouse.retention.* days, and batch ids older than ingest.batchIdRetentionDays.',
    options: { 'dry-run': { type: 'boolean', help: 'list what would be removed, remove nothing' }, ...COMMON },
  },
};

export async function runCloudAdmin(argv: string[], out: (s: string) => void = (s) => process.stdout.write(`${s}\n`)): Promise<void> {
  const picked = parseSubcommand('edgetwin cloud', argv, SUBS, out);
  if (!picked) return;
  // The work's modules (the cloud's config schemas, DuckDB, the stores) load only now: --help and
  // usage errors answer in a fraction of the time.
  const { runCloudAdminCommand } = await import('./cloud-admin-run.js');
  return runCloudAdminCommand(picked, out);
}
