/**
 * A real PostgreSQL server for tests, benchmarks and drills (test/helpers/postgres.ts re-exports it): Debian's `postgresql` package, a data
 * directory in a fresh temp dir, a free loopback port, its socket in that dir. `initdb` refuses to
 * run as root, so as root everything runs as the `postgres` user (`runuser -u postgres`), which
 * owns the dir. initdb runs once per machine into a cached template (`--no-sync`); each server
 * starts from a copy of it (a few hundred ms). Stopped at the end of the test (and at process exit).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './support.js';

export interface PgServer {
  readonly port: number;
  readonly dataDir: string;
  /** `postgres://postgres@127.0.0.1:<port>/<db>` */
  url(db?: string): string;
  /** A new empty database; answers its URL. */
  createDatabase(name?: string): Promise<string>;
  /** `pg_ctl stop -m fast` (connections are closed, as a restart or failover does). */
  stop(mode?: 'fast' | 'immediate'): void;
  start(): void;
  restart(mode?: 'fast' | 'immediate'): void;
  /** Runs a binary of the server's version (pg_basebackup, pg_dump …) as the server's user. */
  bin(name: string, args: string[]): string;
  /** Stops it and removes its directory. */
  destroy(): void;
}

let binDir: string | undefined;
/** The newest installed server's bin directory (Debian: /usr/lib/postgresql/<major>/bin). */
export function postgresBinDir(): string {
  if (binDir) return binDir;
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((v) => existsSync(join(base, v, 'bin', 'pg_ctl')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0) throw new Error('PostgreSQL server binaries not found (apt-get install postgresql)');
  return (binDir = join(base, versions[0]!, 'bin'));
}

const asRoot = userInfo().uid === 0;

function run(bin: string, args: string[], opts: { cwd?: string } = {}): string {
  const cmd = asRoot ? 'runuser' : bin;
  const full = asRoot ? ['-u', 'postgres', '--', bin, ...args] : args;
  return execFileSync(cmd, full, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], cwd: opts.cwd ?? '/' });
}

function own(path: string): void {
  if (!asRoot) return;
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  chownSync(path, uid, gid);
}

/** An initdb'ed data directory kept per machine and server version; copied for each server. */
function template(): string {
  const dir = join(tmpdir(), `edgetwin-pg-template-${postgresBinDir().split('/').at(-2)}`);
  if (existsSync(join(dir, 'PG_VERSION'))) return dir;
  const work = mkdtempSync(join(tmpdir(), 'edgetwin-pg-init-'));
  own(work);
  const data = join(work, 'data');
  run(join(postgresBinDir(), 'initdb'), ['-D', data, '--no-sync', '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C']);
  try {
    renameSync(data, dir); // atomic: a concurrent test process either wins or finds it there
  } catch {
    // another process made it first
  }
  rmSync(work, { recursive: true, force: true });
  return dir;
}

const running = new Set<PgServer>();
process.once('exit', () => {
  for (const s of running) s.stop('immediate');
});
// tap ends a test that ran out of time with SIGTERM: exit handlers do not run on a signal, and the
// server (a daemon of its own) would outlive the test.
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(sig, () => {
    for (const s of running) s.stop('immediate');
    process.exit(128 + (sig === 'SIGTERM' ? 15 : 2));
  });
}

export interface StartOptions {
  /** Extra `postgresql.conf` lines (archive_mode, wal_level …). */
  conf?: string[];
  /** Keep fsync on (durability drills); tests run with fsync off. */
  fsync?: boolean;
  port?: number;
}

export async function startPostgres(opts: StartOptions = {}): Promise<PgServer> {
  const bin = postgresBinDir();
  const root = mkdtempSync(join(tmpdir(), 'edgetwin-pg-'));
  own(root);
  const dataDir = join(root, 'data');
  cpSync(template(), dataDir, { recursive: true });
  if (asRoot) execFileSync('chown', ['-R', 'postgres:postgres', dataDir]);
  const port = opts.port ?? (await freePort());
  const conf = [
    `port = ${port}`,
    "listen_addresses = '127.0.0.1'",
    `unix_socket_directories = '${root}'`,
    `fsync = ${opts.fsync ? 'on' : 'off'}`,
    `synchronous_commit = ${opts.fsync ? 'on' : 'off'}`,
    'full_page_writes = off',
    'max_connections = 200',
    'shared_buffers = 32MB',
    ...(opts.conf ?? []),
  ];
  writeFileSync(join(dataDir, 'postgresql.auto.conf'), `${conf.join('\n')}\n`);
  own(join(dataDir, 'postgresql.auto.conf'));
  const logFile = join(root, 'server.log');
  const pgctl = (args: string[]): void => void run(join(bin, 'pg_ctl'), ['-D', dataDir, ...args]);
  let up = false;
  const server: PgServer = {
    port,
    dataDir,
    url: (db = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${db}`,
    async createDatabase(name = `t_${Math.random().toString(36).slice(2, 10)}`) {
      const c = new pg.Client({ connectionString: server.url() });
      await c.connect();
      try {
        await c.query(`CREATE DATABASE ${name}`);
      } finally {
        await c.end();
      }
      return server.url(name);
    },
    start() {
      if (up) return;
      pgctl(['start', '-w', '-t', '30', '-l', logFile]);
      up = true;
    },
    stop(mode = 'fast') {
      if (!up) return;
      up = false;
      const r = spawnSync(asRoot ? 'runuser' : join(bin, 'pg_ctl'), [
        ...(asRoot ? ['-u', 'postgres', '--', join(bin, 'pg_ctl')] : []),
        '-D',
        dataDir,
        'stop',
        '-w',
        '-m',
        mode,
      ]);
      if (r.status !== 0 && existsSync(join(dataDir, 'postmaster.pid'))) throw new Error(`pg_ctl stop: ${r.stderr.toString()}`);
    },
    restart(mode = 'fast') {
      server.stop(mode);
      server.start();
    },
    bin: (name, args) => run(join(bin, name), args, { cwd: root }),
    destroy() {
      server.stop('immediate');
      running.delete(server);
      rmSync(root, { recursive: true, force: true });
    },
  };
  mkdirSync(root, { recursive: true });
  server.start();
  running.add(server);
  return server;
}
