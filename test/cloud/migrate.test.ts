/**
 * `edgetwin cloud migrate --to postgres`: a single-node cloud's SQLite state copied into a real
 * PostgreSQL — interrupted and resumed, counts checked — and a cloud on PostgreSQL then serves the
 * same twins, tokens and audit, and still knows every stored identity and batch id.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { loadCloudConfig } from '../../cloud/config.js';
import { migrateToPostgres } from '../../cli/cloud-migrate.js';
import { call, envelope, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { runCliAsync } from '../helpers/cli.js';
import { sharedPostgres } from '../helpers/stores.js';
import { tempDir } from '../helpers/util.js';

t.test('SQLite → PostgreSQL: resumable, counted, and the cloud carries on', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const state = join(dir, 'single');
  const lake = join(dir, 'lake');
  const single = await startTestCloud(state, { lakehouse: { root: lake } });
  const admin = (await single.tokens.create({ role: 'admin', name: 'ops', createdBy: 'test' })).token;
  for (let b = 0; b < 6; b++) {
    const body = envelope(`b-${b}`, 'site-a', [telemetry(`dev-${b % 3}`, 1, readings(30, 1 + Math.floor(b / 3) * 30))]);
    t.equal((await call('POST', `${single.url}/v1/ingest`, { token: admin, body })).status, 200);
  }
  const patched = await call('PATCH', `${single.url}/v1/twins/dev-1/desired`, {
    token: admin,
    body: { rate: 5 },
    headers: { 'if-match': '*' },
  });
  t.equal(patched.status, 200);
  const before = await call('GET', `${single.url}/v1/twins/dev-1`, { token: admin });
  await single.flush();
  await single.stop();

  const pg = await sharedPostgres();
  const url = await pg.createDatabase();
  const cfg = loadCloudConfig(undefined, { stateDir: state, lakehouse: { root: lake } }, {});
  let chunks = 0;
  await t.rejects(
    migrateToPostgres(cfg, {
      url,
      chunk: 5,
      progress: () => {
        if (++chunks === 4) throw new Error('interrupted');
      },
    }),
    /interrupted/,
    'a copy interrupted after a few chunks',
  );

  const file = join(dir, 'cloud.json');
  writeFileSync(file, JSON.stringify({ stateDir: state, lakehouse: { root: lake } }));
  const run = await runCliAsync(['cloud', 'migrate', '--to', 'postgres', '--url', url, '--config', file, '--json'], {
    EDGETWIN_PROGRESS: 'off',
  });
  t.equal(run.status, 0, `the CLI resumes and succeeds: ${run.stderr}`);
  const report = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as {
    ok: boolean;
    resumed: boolean;
    tables: { table: string; source: number; target: number }[];
  };
  t.ok(report.ok && report.resumed, 'resumed, counts match');
  t.ok(
    report.tables.every((x) => x.source === x.target),
    'every table counted alike',
  );
  t.match(
    report.tables.find((x) => x.table === 'twins'),
    { source: 3, target: 3 },
  );

  const onPg = await startTestCloud(join(dir, 'replica'), { store: { kind: 'postgres', url }, lakehouse: { root: lake } });
  t.teardown(() => onPg.stop());
  const after = await call('GET', `${onPg.url}/v1/twins/dev-1`, { token: admin });
  t.equal(after.status, 200, 'the token works on PostgreSQL');
  t.same({ ...after.body, health: null }, { ...before.body, health: null }, 'the same twin, field for field');
  const again = await call('POST', `${onPg.url}/v1/ingest`, {
    token: admin,
    body: envelope('b-0', 'site-a', [telemetry('dev-0', 1, readings(30, 1))]),
  });
  t.equal(again.body.duplicateBatch, true, 'batch ids came along');
  const rebatched = await call('POST', `${onPg.url}/v1/ingest`, {
    token: admin,
    body: envelope('new-id', 'site-a', [telemetry('dev-0', 1, readings(40, 41))]),
  });
  t.match(rebatched.body, { stored: 20, duplicates: 20 }, 'identities came along: of seq 41..80 only 61..80 are new');
  const patch2 = await call('PATCH', `${onPg.url}/v1/twins/dev-1/desired`, {
    token: admin,
    body: { rate: 6 },
    headers: { 'if-match': after.headers['etag'] as string },
  });
  t.equal(patch2.status, 200, 'the ETag carried over');
  const audit = await call('GET', `${onPg.url}/v1/twins/dev-1/audit`, { token: admin });
  t.equal(audit.body.items.length, 2, 'the old audit entry and a new one, ids not colliding');
});
