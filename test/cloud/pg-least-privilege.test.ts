/**
 * Least privilege on a real PostgreSQL with password (SCRAM) authentication: `edgetwin cloud
 * setup-db` runs as a non-superuser owner, applies the migrations and creates the application role;
 * a cloud logged in as that role ingests, patches twins, audits and writes the lake; the role itself
 * cannot change the schema, rewrite the audit trail or widen its grants; a replica meeting an older
 * schema refuses to start with a code; the owner's tool refuses roles that grants cannot limit.
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import t from 'tap';
import { appPassword, setupDb } from '../../cli/cloud-setup-db.js';
import { loadCloudConfig } from '../../cloud/config.js';
import { migrate } from '../../cloud/store/migrator.js';
import { MIGRATIONS } from '../../cloud/store/migrations/index.js';
import { PostgresStore, withPassword } from '../../cloud/store/postgres-store.js';
import { scramVerifier } from '../../cloud/store/pg-roles.js';
import { call, envelope, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { runCliAsync } from '../helpers/cli.js';
import { startPostgres } from '../helpers/postgres.js';
import { tempDir } from '../helpers/util.js';

const OWNER_PW = 'owner-Secret-0wner';
const APP_PW = 'app-Secret-4pp-2026';

t.test('setup-db as the owner; the cloud runs as a role that can only read and write rows', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const server = await startPostgres();
  t.teardown(() => server.destroy());
  // Passwords are checked (SCRAM) for everyone but the test's superuser, as on a real server.
  writeFileSync(
    join(server.dataDir, 'pg_hba.conf'),
    'local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n',
  );
  server.bin('pg_ctl', ['-D', server.dataDir, 'reload']);
  const su = new pg.Client({ connectionString: server.url() });
  await su.connect();
  t.teardown(() => su.end());
  // The owner is not a superuser (Azure's server admin is not either): it owns the database, may create roles.
  await su.query(`CREATE ROLE edgetwin_owner LOGIN CREATEROLE PASSWORD '${scramVerifier(OWNER_PW)}'`);
  await su.query('CREATE DATABASE twins_lp OWNER edgetwin_owner');
  const ownerUrl = `postgres://edgetwin_owner@127.0.0.1:${server.port}/twins_lp`;
  const appUrl = `postgres://edgetwin_app@127.0.0.1:${server.port}/twins_lp`;
  const asApp = (password: string) =>
    new pg.Client({ host: '127.0.0.1', port: server.port, user: 'edgetwin_app', database: 'twins_lp', password });
  // The superuser inside the cloud's database (for what the roles themselves may not see or do).
  const suDb = new pg.Client({ connectionString: server.url('twins_lp') });

  await suDb.connect();
  t.teardown(() => suDb.end());

  const pwFile = join(dir, 'app-password');
  writeFileSync(pwFile, `${APP_PW}\n`, { mode: 0o600 });
  const cfgFile = join(dir, 'cloud.json');
  writeFileSync(cfgFile, JSON.stringify({ stateDir: join(dir, 'tool'), store: { kind: 'postgres', url: ownerUrl } }));
  const run = await runCliAsync(
    ['cloud', 'setup-db', '--config', cfgFile, '--app-role', 'edgetwin_app', '--app-password-file', pwFile, '--json'],
    { PGPASSWORD: OWNER_PW },
  );
  t.equal(run.status, 0, run.stderr);
  const report = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as {
    migrationsApplied: string[];
    appRole: { created: boolean; tables: { table: string; privileges: string }[] };
  };
  t.same(
    report.migrationsApplied,
    MIGRATIONS.map((m) => m.id),
    'every migration applied by the owner',
  );
  t.ok(report.appRole.created, 'the application role was created');
  const grants = new Map(report.appRole.tables.map((x) => [x.table, x.privileges]));
  t.equal(grants.get('audit'), 'SELECT, INSERT', 'audit is append-only');
  t.equal(grants.get('schema_migrations'), 'SELECT');
  t.equal(grants.get('twins'), 'SELECT, INSERT, UPDATE, DELETE');
  t.notMatch(run.stdout + run.stderr, new RegExp(`${APP_PW}|${OWNER_PW}`), 'no password is printed');
  const stored = await su.query("SELECT rolpassword, rolsuper, rolcreaterole FROM pg_authid WHERE rolname = 'edgetwin_app'");
  t.match(stored.rows[0], { rolsuper: false, rolcreaterole: false }, 'no role attributes beyond LOGIN');
  t.match(stored.rows[0].rolpassword, /^SCRAM-SHA-256\$4096:/, 'only a SCRAM verifier is stored');

  t.test('a wrong password is refused by the server', async (t) => {
    const c = asApp('not-the-password');
    await t.rejects(c.connect(), { code: '28P01' });
  });

  t.test('the cloud, logged in as the application role, does its whole job', async (t) => {
    const storePw = join(dir, 'store-password');
    writeFileSync(storePw, APP_PW, { mode: 0o600 });
    const cloud = await startTestCloud(join(dir, 'cloud'), {
      store: { kind: 'postgres', url: appUrl, passwordFile: storePw },
      lakehouse: { root: join(dir, 'lake') },
    });
    t.teardown(() => cloud.stop());
    const admin = (await cloud.tokens.create({ role: 'admin', name: 'ops', createdBy: 'test' })).token;
    const body = envelope('lp-1', 'site-a', [telemetry('dev-1', 1, readings(20))]);
    t.equal((await call('POST', `${cloud.url}/v1/ingest`, { token: admin, body })).status, 200, 'ingest');
    const patch = await call('PATCH', `${cloud.url}/v1/twins/dev-1/desired`, {
      token: admin,
      body: { rate: 2 },
      headers: { 'if-match': '*' },
    });
    t.equal(patch.status, 200, 'a desired change (audited)');
    await cloud.flush();
    t.equal((await suDb.query('SELECT count(*)::int AS n FROM staging')).rows[0].n, 0, 'the lake writer (under its lease) took the batch');
    const audit = await call('GET', `${cloud.url}/v1/audit?action=twin.desired.patch`, { token: admin });
    t.equal(audit.status, 200);
    t.equal((audit.body as { items: { device: string }[] }).items[0]?.device, 'dev-1', 'the change is in the audit trail');
    const twin = await call('GET', `${cloud.url}/v1/twins/dev-1`, { token: admin });
    t.equal(twin.status, 200);
  });

  t.test('the application role cannot change the schema, the audit trail or its own grants', async (t) => {
    const app = asApp(APP_PW);
    await app.connect();
    t.teardown(() => app.end());
    t.ok((await app.query('SELECT count(*) FROM twins')).rows[0], 'rows can be read');
    const denied = [
      'DROP TABLE twins',
      'ALTER TABLE twins ADD COLUMN evil TEXT',
      'CREATE TABLE evil (x INT)',
      'TRUNCATE changes',
      'UPDATE audit SET actor = $$nobody$$',
      'DELETE FROM audit',
      "INSERT INTO schema_migrations (id, applied_at) VALUES ('9999-evil', 0)",
      'CREATE FUNCTION evil() RETURNS int LANGUAGE sql AS $$SELECT 1$$',
      'CREATE ROLE evil LOGIN',
    ];
    for (const sql of denied) await t.rejects(app.query(sql), { code: /^42501$/ }, sql);
    // Without the grant option PostgreSQL only warns "no privileges were granted": check nothing was.
    await app.query('GRANT SELECT ON twins TO PUBLIC');
    const publicGrants = await suDb.query(
      "SELECT 1 FROM information_schema.role_table_grants WHERE grantee = 'PUBLIC' AND table_name = 'twins'",
    );
    t.equal(publicGrants.rowCount, 0, 'it cannot pass its privileges on');
  });

  t.test('re-running narrows privileges granted by hand, and is idempotent', async (t) => {
    await suDb.query('GRANT TRUNCATE, TRIGGER ON changes TO edgetwin_app');
    const cfg = loadCloudConfig(
      undefined,
      { stateDir: join(dir, 'tool'), store: { kind: 'postgres', url: ownerUrl, passwordFile: '' } },
      {},
    );
    process.env['PGPASSWORD'] = OWNER_PW;
    t.teardown(() => delete process.env['PGPASSWORD']);
    const again = await setupDb(cfg, { appRole: 'edgetwin_app' });
    t.same(again.migrationsApplied, [], 'nothing left to migrate');
    t.equal(again.appRole?.created, false, 'the role is kept');
    t.equal(again.appRole?.passwordSet, false, 'and its password too, when none is given');
    const privs = await suDb.query(
      "SELECT privilege_type FROM information_schema.role_table_grants WHERE grantee = 'edgetwin_app' AND table_name = 'changes' ORDER BY 1",
    );
    t.same(
      privs.rows.map((r: { privilege_type: string }) => r.privilege_type),
      ['DELETE', 'INSERT', 'SELECT', 'UPDATE'],
      'TRUNCATE and TRIGGER are gone again',
    );

    for (const [role, why] of [
      ['edgetwin_owner', /owner that runs setup-db/],
      ['postgres', /superuser/],
      ['x"; DROP TABLE twins; --', /must match/],
      ['nobody_yet', /does not exist: give its password/],
    ] as const)
      await t.rejects(setupDb(cfg, { appRole: role }), { code: 'EDGETWIN_ERR_USAGE', message: why }, role);
    await su.query('CREATE ROLE owner_friend LOGIN');
    await su.query('GRANT edgetwin_owner TO owner_friend');
    await t.rejects(setupDb(cfg, { appRole: 'owner_friend' }), { code: 'EDGETWIN_ERR_USAGE', message: /member of edgetwin_owner/ });
    t.equal((await suDb.query("SELECT 1 FROM pg_tables WHERE tablename = 'twins'")).rowCount, 1, 'twins is still there');

    const loose = join(dir, 'loose-password');
    writeFileSync(loose, APP_PW);
    chmodSync(loose, 0o644);
    const r = await runCliAsync(['cloud', 'setup-db', '--url', ownerUrl, '--app-role', 'edgetwin_app', '--app-password-file', loose], {
      PGPASSWORD: OWNER_PW,
    });
    t.equal(r.status, 2, 'a password file others can read is a usage error');
    t.match(r.stderr, /chmod 600/);
    t.throws(() => appPassword(undefined, { EDGETWIN_APP_DB_PASSWORD: 'short' }), { code: 'EDGETWIN_ERR_USAGE', message: /at least 12/ });
    t.equal(appPassword(undefined, {}), undefined, 'no password: the role keeps its own');
  });

  t.test('a replica that meets an older schema refuses to start, and changes nothing', async (t) => {
    const store = await PostgresStore.open({
      url: appUrl,
      password: APP_PW,
      poolMax: 2,
      connectTimeoutMs: 2000,
      statementTimeoutMs: 4000,
      notifyBatchMs: 5,
    });
    t.teardown(() => store.close());
    const newer = [
      ...MIGRATIONS,
      { id: '9999-newer-build', up: (tx: { exec(sql: string): Promise<void> }) => tx.exec('CREATE TABLE newer (x INT)') },
    ];
    await t.rejects(migrate(store, undefined, newer), {
      code: 'EDGETWIN_ERR_STORE_SCHEMA',
      message: /pending: 9999-newer-build.*edgetwin cloud setup-db/,
    });
    t.equal((await suDb.query("SELECT 1 FROM pg_tables WHERE tablename = 'newer'")).rowCount, 0, 'no table was created');
  });
});

t.test('a password with URL-special characters reaches pg intact, and the URL without one is unchanged', async (t) => {
  // What the driver itself makes of the URL (pg.Client parses it the way the pool does).
  const parse = (u: string) => {
    const c = new pg.Client({ connectionString: u }) as unknown as {
      user: string;
      host: string;
      port: number;
      database: string;
      password: string;
    };
    return { user: c.user, host: c.host, port: c.port, database: c.database, password: c.password };
  };
  const url = 'postgres://edgetwin_app@db.example:5432/edgetwin?sslmode=require';
  for (const pw of ['p@ss:w/rd%20?#&=', 'ünïcødé pass', 'quote\'and"dq']) {
    const parsed = parse(withPassword(url, pw));
    t.equal(parsed.password, pw, JSON.stringify(pw));
    t.match(parsed, { user: 'edgetwin_app', host: 'db.example', port: 5432, database: 'edgetwin' });
  }
  t.equal(withPassword(url, undefined), url);
});
