/**
 * `edgetwin cloud audit verify` (compiled CLI): exit 0 with the chain's tip on an intact export,
 * exit 1 naming file and line of a changed line; and `cloud tokens create --expires-in`.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { AuditLog } from '../../cloud/audit/audit-log.js';
import { AuditExporter, auditExportDefaults } from '../../cloud/audit/export.js';
import { SqliteStore } from '../../cloud/store/sqlite-store.js';
import { createLogger } from '../../common/log.js';
import { createRegistry } from '../../common/metrics.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/util.js';

t.test('cloud audit verify and token expiry from the CLI', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const stateDir = join(dir, 'cloud');
  const env = { EDGETWIN_CLOUD_STATE_DIR: stateDir };
  const store = await SqliteStore.open({ stateDir });
  const audit = new AuditLog(store);
  const who = { id: 't_1', name: 'alice', role: 'admin' as const, site: null };
  for (let i = 0; i < 20; i++) await audit.record(store, who, 'desired.patch', { device: `d-${i}`, site: 's' }, { i });
  const out = join(stateDir, 'audit');
  await new AuditExporter({
    store,
    cfg: { ...auditExportDefaults, segmentMaxBytes: 2000 },
    dir: out,
    log: createLogger('t', { level: 'silent' }),
    registry: createRegistry('t'),
  }).exportOnce();
  await store.close();

  const ok = runCli(['cloud', 'audit', 'verify'], env);
  t.equal(ok.status, 0, ok.stderr);
  t.match(ok.stdout, /^ok: 20 lines in \d+ segments up to seq 20 \(audit id 20\); last hash [0-9a-f]{64}/);
  const json = runCli(['cloud', 'audit', 'verify', '--dir', out, '--json'], env);
  t.same(JSON.parse(json.stdout).lines, 20);

  const first = readdirSync(out).filter((f) => f.endsWith('.jsonl'))[0]!;
  const lines = readFileSync(join(out, first), 'utf8').split('\n');
  lines[1] = lines[1]!.replace('"d-1"', '"d-99"');
  writeFileSync(join(out, first), lines.join('\n'));
  const bad = runCli(['cloud', 'audit', 'verify'], env);
  t.equal(bad.status, 1);
  t.match(bad.stdout, new RegExp(`${first}:2: changed: line seq 2 \\(audit id 2\\) was changed`));
  t.match(bad.stderr, /EDGETWIN_ERR_AUDIT_CHAIN/);

  const tok = runCli(['cloud', 'tokens', 'create', '--role', 'viewer', '--expires-in', '30d', '--json'], env);
  t.equal(tok.status, 0, tok.stderr);
  const info = JSON.parse(tok.stdout) as { expiresAt: number };
  t.ok(Math.abs(info.expiresAt - (Date.now() + 30 * 86_400_000)) < 60_000, 'expires in 30 days');
  t.match(runCli(['cloud', 'tokens', 'list'], env).stdout, /active .*expires 20\d\d-/);
  const wrong = runCli(['cloud', 'tokens', 'create', '--role', 'viewer', '--expires-in', 'soon'], env);
  t.equal(wrong.status, 2);
  t.match(wrong.stderr, /--expires-in must be/);
});
