/** `edgetwin backup` and `edgetwin restore`; progress on stderr (a bar on a terminal, lines otherwise). */
import { backup, restore, verifyBackup } from '../common/backup.js';
import { EdgetwinError, ErrorCodes } from '../common/errors.js';
import { Progress, progressModeFromEnv } from '../common/progress.js';
import { HELP_OPTION, helpText, parseCommand, usage, type OptionTable } from './args.js';

const ABOUT = `Backs up a daemon's state directory (cloud: twin store, tokens, audit, lakehouse; collector: device
registry, spool, twin store; agent: outbox) while the daemon runs: SQLite files through SQLite's online
backup API, other files (Parquet, JSON) copied, all listed with sha256 in edgetwin-backup.json.
A restore checks every checksum first, needs the daemon stopped, and moves an existing state
directory aside (<DIR>.before-restore-<time>) instead of deleting it.`;

const BACKUP_OPTIONS: OptionTable = {
  state: { type: 'string', value: 'DIR', help: "the daemon's stateDir (see its config)", required: true },
  out: { type: 'string', value: 'DIR', help: 'where to write the backup (must not already hold one)', required: true },
  ...HELP_OPTION,
};

const RESTORE_OPTIONS: OptionTable = {
  from: { type: 'string', value: 'DIR', help: 'a backup directory', required: true },
  state: { type: 'string', value: 'DIR', help: "the stopped daemon's stateDir to restore into", default: 'none; required unless --verify' },
  verify: { type: 'boolean', help: "only check the backup's files against its manifest" },
  ...HELP_OPTION,
};

export const BACKUP_HELP = helpText(
  'Usage: edgetwin backup --state DIR --out DIR',
  BACKUP_OPTIONS,
  ABOUT,
  'Progress goes to stderr: a bar on a terminal, lines otherwise (EDGETWIN_PROGRESS).',
);
export const RESTORE_HELP = helpText(
  `Usage: edgetwin restore --from DIR --state DIR
       edgetwin restore --verify --from DIR`,
  RESTORE_OPTIONS,
  ABOUT,
  'Progress goes to stderr: a bar on a terminal, lines otherwise (EDGETWIN_PROGRESS).',
);

export async function runBackupCommand(command: 'backup' | 'restore', args: string[], out: (l: string) => void): Promise<void> {
  const name = `edgetwin ${command}`;
  const { values } = parseCommand(name, args, command === 'backup' ? BACKUP_OPTIONS : RESTORE_OPTIONS);
  if (values.help) return out(command === 'backup' ? BACKUP_HELP : RESTORE_HELP);
  const need = (v: string | boolean | undefined, flag: string): string => {
    if (typeof v !== 'string' || !v) usage(`${name} needs ${flag}; run '${name} --help'`);
    return v;
  };
  const progressOf = (label: string): Progress => new Progress(label, 0, { mode: progressModeFromEnv() });
  if (command === 'backup') {
    const state = need(values.state, '--state DIR');
    const dest = need(values.out, '--out DIR');
    const progress = progressOf(`backup ${state}`);
    let copied = 0;
    const m = await backup(state, dest, (_f, done, total) => progress.update((copied = done), `${done}/${total} files`, false, total));
    progress.done(copied, `${copied}/${m.files.length} files`);
    for (const f of m.files) out(`  ${f.kind === 'sqlite' ? 'db  ' : 'file'}  ${f.path}  ${f.bytes} B`);
    out(`backed up ${m.files.length} files from ${m.source} to ${dest}`);
    return;
  }
  const from = need(values.from, '--from DIR');
  if (values.verify) {
    const problems = verifyBackup(from);
    if (problems.length) throw new EdgetwinError(ErrorCodes.STORE_CORRUPT, `backup is damaged:\n  ${problems.join('\n  ')}`);
    out(`backup ${from} is intact`);
    return;
  }
  const state = need(values.state, '--state DIR');
  const progress = progressOf(`restore ${from}`);
  const r = restore(from, state, (done, total) => progress.update(done, `${done}/${total} files`, false, total));
  progress.done(r.files, `${r.files}/${r.files} files`);
  out(`restored ${r.files} files into ${state}${r.movedAside ? `; the previous state is kept in ${r.movedAside}` : ''}`);
}
