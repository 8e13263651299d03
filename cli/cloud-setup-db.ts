/**
 * `edgetwin cloud setup-db`: the owner's half of a least-privilege PostgreSQL deployment. Run once
 * per install and per upgrade (before the new replicas start; Terraform runs it as a job): applies
 * the schema migrations as the database owner, then creates or updates the application role the
 * replicas log in as and grants it only row access (cloud/store/pg-roles.ts). The replicas then
 * never run DDL; one that meets an older schema refuses to start with EDGETWIN_ERR_STORE_SCHEMA.
 */
import { readFileSync, statSync } from 'node:fs';
import type { CloudConfig } from '../cloud/config.js';
import type { AppRoleReport } from '../cloud/store/pg-roles.js';
import { EdgetwinError, ErrorCodes } from '../common/errors.js';
import { HELP_OPTION, usage, type Subcommand } from './args.js';

export const setupDbSubcommand: Subcommand = {
  usage: 'Usage: edgetwin cloud setup-db [--url URL] [--app-role NAME [--app-password-file FILE]] [options]',
  about:
    'As the database owner: applies the schema migrations, then (with --app-role) creates or updates the role the cloud replicas ' +
    'log in as and grants it row access only (no DDL; the audit table append-only). Run it again after every upgrade.',
  footer:
    'The owner password comes from store.passwordFile, EDGETWIN_STORE_PASSWORD or PGPASSWORD; the application role password from ' +
    '--app-password-file (mode 600) or EDGETWIN_APP_DB_PASSWORD. Only its SCRAM verifier is sent to the server.',
  options: {
    url: {
      type: 'string',
      value: 'URL',
      help: "the owner's postgres://owner@host:5432/db",
      default: 'store.url',
    },
    'app-role': {
      type: 'string',
      value: 'NAME',
      help: 'the role the replicas log in as (created if missing)',
      default: 'none: migrations only',
    },
    'app-password-file': {
      type: 'string',
      value: 'FILE',
      help: "the application role's password (mode 600); needed to create the role",
      default: 'env EDGETWIN_APP_DB_PASSWORD, else the password is left as it is',
    },
    config: {
      type: 'string',
      value: 'FILE',
      help: 'cloud config (store.url, store.passwordFile)',
      default: 'built-in defaults plus environment overrides',
    },
    json: { type: 'boolean', help: 'machine-readable output on stdout' },
    ...HELP_OPTION,
  },
};

export interface SetupDbReport {
  migrationsApplied: string[];
  appRole?: AppRoleReport;
}

/** The application role's password: a private file, else the environment; never echoed. */
export function appPassword(file: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  let text: string | undefined;
  if (file === undefined) text = env['EDGETWIN_APP_DB_PASSWORD'] || undefined;
  else {
    try {
      if ((statSync(file).mode & 0o077) !== 0) usage(`--app-password-file ${file} is readable by group or others: chmod 600 it`);
      text = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (cause) {
      if (cause instanceof EdgetwinError) throw cause;
      throw new EdgetwinError(ErrorCodes.USAGE, `--app-password-file: cannot read ${file}`, { cause });
    }
  }
  if (text !== undefined && text.length < 12)
    usage(`the application role's password (${file ?? 'EDGETWIN_APP_DB_PASSWORD'}) must have at least 12 characters`);
  return text;
}

export async function setupDb(
  cfg: CloudConfig,
  opts: { url?: string | undefined; appRole?: string | undefined; appPassword?: string | undefined },
): Promise<SetupDbReport> {
  const url = opts.url ?? cfg.store.url;
  if (!url) usage('edgetwin cloud setup-db needs --url or store.url (a postgres:// URL of the owner)');
  if (opts.appPassword !== undefined && !opts.appRole) usage('an application password needs --app-role');
  // The store's modules load only here: cli/cloud-admin.ts imports this file for its options, and
  // every `edgetwin cloud <sub> --help` would pay for them.
  const [{ openToolPostgres }, { grantAppRole }] = await Promise.all([
    import('../cloud/store/open-store.js'),
    import('../cloud/store/pg-roles.js'),
  ]);
  const applied: string[] = [];
  const db = await openToolPostgres(cfg.store, url, 'edgetwin-setup-db', (ids) => applied.push(...ids));
  try {
    const report: SetupDbReport = { migrationsApplied: applied };
    if (opts.appRole) report.appRole = await grantAppRole(db, opts.appRole, opts.appPassword);
    return report;
  } finally {
    await db.close();
  }
}

export function describeSetupDb(r: SetupDbReport): string {
  const lines = [r.migrationsApplied.length ? `migrations applied: ${r.migrationsApplied.join(', ')}` : 'schema is current'];
  if (r.appRole) {
    const a = r.appRole;
    lines.push(`role ${a.role}: ${a.created ? 'created' : 'exists'}${a.passwordSet ? ', password set' : ''}; grants:`);
    for (const t of a.tables) lines.push(`  ${t.table.padEnd(26)} ${t.privileges || 'none'}`);
  }
  return lines.join('\n');
}
