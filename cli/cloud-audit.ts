/**
 * `edgetwin cloud audit verify`: checks the audit export (hash-chained JSON-lines segments, see
 * cloud/audit/chain.ts) end to end and names every changed, missing, reordered or cut-off line by
 * file and line number. Exit 0 and the chain's tip (keep its hash somewhere else: an anchor) when
 * it holds; exit 1 with EDGETWIN_ERR_AUDIT_CHAIN when it does not. Reads files only: safe beside a
 * running cloud, and on a copy downloaded from the immutable Blob container.
 */
import { join } from 'node:path';
import { verifyChain } from '../cloud/audit/chain.js';
import type { CloudConfig } from '../cloud/config.js';
import { EdgetwinError, ErrorCodes } from '../common/errors.js';
import { HELP_OPTION, type Subcommand } from './args.js';

export const auditSubcommands: Record<string, Subcommand> = {
  audit: {
    usage: 'Usage: edgetwin cloud audit <verify> [options]',
    about: `  verify      check the hash-chained audit export end to end (a changed or missing line is named)

Run 'edgetwin cloud audit verify --help' for its options.`,
    options: HELP_OPTION,
    group: true,
  },
  'audit verify': {
    usage: 'Usage: edgetwin cloud audit verify [--dir DIR] [options]',
    about: 'Checks every audit export segment: each line hash-chained to the one before it, seq without gaps, sealed segments complete.',
    footer: 'Exit status: 0 when the chain holds, 1 when a line was changed, removed or reordered (each problem is printed).',
    options: {
      dir: {
        type: 'string',
        value: 'DIR',
        help: 'the segments folder (e.g. a copy of the Blob container)',
        default: 'audit.export.dir, else <stateDir>/audit',
      },
      config: {
        type: 'string',
        value: 'FILE',
        help: 'cloud config (stateDir, audit.export.dir)',
        default: 'built-in defaults plus environment overrides',
      },
      json: { type: 'boolean', help: 'machine-readable output on stdout' },
      ...HELP_OPTION,
    },
  },
};

/** The export folder of a config. */
export function auditExportDir(cfg: Pick<CloudConfig, 'stateDir' | 'audit'>): string {
  return cfg.audit.export.dir || join(cfg.stateDir, 'audit');
}

export function runAuditVerify(dir: string, print: (human: string, data: unknown) => void): void {
  const r = verifyChain(dir);
  if (r.segments === 0) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no audit export segments in ${dir}`);
  const summary = `${r.lines} lines in ${r.segments} segments up to seq ${r.lastSeq} (audit id ${r.lastId}); last hash ${r.lastHash}`;
  if (r.ok) return print(`ok: ${summary}`, r);
  print(
    [...r.problems.map((p) => `${p.file}:${p.line}: ${p.kind}: ${p.message}`), `FAILED: ${r.problems.length} problem(s); ${summary}`].join(
      '\n',
    ),
    r,
  );
  throw new EdgetwinError(ErrorCodes.AUDIT_CHAIN, `the audit export in ${dir} does not verify (${r.problems.length} problem(s))`, {
    details: { problems: r.problems.length },
  });
}
