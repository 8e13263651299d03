/** `edgetwin backup` and `edgetwin restore`. */
import { parseArgs } from 'node:util';
import { backup, restore, verifyBackup } from '../common/backup.js';
import { EdgetwinError, ErrorCodes } from '../common/errors.js';

export const BACKUP_HELP = `Usage: edgetwin backup --state DIR --out DIR
       edgetwin restore --from DIR --state DIR
       edgetwin restore --verify --from DIR

Backs up a daemon's state directory (cloud: twin store, tokens, audit, lakehouse; collector: device
registry, spool, twin store; agent: outbox) while the daemon runs: SQLite files through SQLite's online
backup API, other files (Parquet, JSON) copied, all listed with sha256 in edgetwin-backup.json.
A restore checks every checksum first, needs the daemon stopped, and moves an existing state
directory aside (<DIR>.before-restore-<time>) instead of deleting it.

Options:
  --state DIR   the daemon's stateDir (see its config)
  --out DIR     where to write the backup (must not already hold one)
  --from DIR    a backup directory
  --verify      only check a backup's files against its manifest
  --help        show this help`;

export async function runBackupCommand(command: 'backup' | 'restore', args: string[], out: (l: string) => void): Promise<void> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: { state: { type: 'string' }, out: { type: 'string' }, from: { type: 'string' }, verify: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) return out(BACKUP_HELP);
  const need = (v: string | undefined, flag: string): string => {
    if (!v) throw new EdgetwinError(ErrorCodes.USAGE, `${command} needs ${flag}; run 'edgetwin ${command} --help'`);
    return v;
  };
  if (command === 'backup') {
    const m = await backup(need(values.state, '--state DIR'), need(values.out, '--out DIR'), (f) => out(`  ${f.kind === 'sqlite' ? 'db  ' : 'file'}  ${f.path}  ${f.bytes} B`));
    out(`backed up ${m.files.length} files from ${m.source} to ${values.out}`);
    return;
  }
  const from = need(values.from, '--from DIR');
  if (values.verify) {
    const problems = verifyBackup(from);
    if (problems.length) throw new EdgetwinError(ErrorCodes.STORE_CORRUPT, `backup is damaged:\n  ${problems.join('\n  ')}`);
    out(`backup ${from} is intact`);
    return;
  }
  const r = restore(from, need(values.state, '--state DIR'));
  out(`restored ${r.files} files into ${values.state}${r.movedAside ? `; the previous state is kept in ${r.movedAside}` : ''}`);
}
