/**
 * What can be checked of the deployment artefacts on a machine with no Docker engine and no Azure:
 * systemd verifies the units, the daemons really speak sd_notify, and the Dockerfile and Terraform
 * are checked for the mistakes a reviewer would catch.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { CLI } from '../helpers/cli.js';
import { hclAttr as attr, hclBlock } from '../helpers/hcl.js';
import { tempDir, waitFor } from '../helpers/util.js';

const root = new URL('../..', import.meta.url).pathname;
const units = ['edgetwin-agent.service', 'edgetwin-collector.service'].map((u) => join(root, 'deploy/systemd', u));

t.test('systemd-analyze verify accepts both units without a single warning', async (t) => {
  const r = spawnSync('systemd-analyze', ['verify', ...units], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stderr.trim(), '', 'no warnings (unknown keys only warn, so warnings fail this test)');
});

t.test('units are hardened and supervised', async (t) => {
  for (const f of units) {
    const text = readFileSync(f, 'utf8');
    for (const line of [
      'User=edgetwin',
      'ProtectSystem=strict',
      'ReadWritePaths=/var/lib/edgetwin',
      'Restart=on-failure',
      'Type=notify',
      'NotifyAccess=all',
      'NoNewPrivileges=yes',
    ]) {
      t.ok(text.split('\n').includes(line), `${f.split('/').pop()}: ${line}`);
    }
    t.match(text, /^WatchdogSec=\d+/m);
  }
});

t.test('a daemon sends READY, WATCHDOG and STOPPING to $NOTIFY_SOCKET', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const sock = join(dir, 'notify.sock');
  const received = join(dir, 'received.txt');
  // Node cannot bind unix datagram sockets; python can, and plays systemd's side here.
  const listener = spawn(
    'python3',
    [
      '-c',
      `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
with open(sys.argv[2], "a") as out:
    while True:
        out.write(s.recv(4096).decode() + "\\n"); out.flush()
`,
      sock,
      received,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.teardown(() => listener.kill());
  await new Promise((r) => listener.stdout.once('data', r));
  const cfg = join(dir, 'cloud.json');
  writeFileSync(cfg, JSON.stringify({ stateDir: join(dir, 'cloud'), http: { port: 0 } }));
  const daemon = spawn(process.execPath, [CLI, 'cloud', '--config', cfg], {
    env: { ...process.env, NOTIFY_SOCKET: sock, WATCHDOG_USEC: '2000000', EDGETWIN_LOG_LEVEL: 'warn' },
    stdio: 'ignore',
  });
  const read = (): string => (existsSync(received) ? readFileSync(received, 'utf8') : '');
  // A liveness bound, not a speed check: the compiled cloud spends ~2 s of CPU loading its modules
  // (DuckDB, SDKs), which took 18 s of wall time at load average 36 on this 2-core machine.
  await waitFor(() => read().includes('READY=1'), 90_000, 'READY=1');
  await waitFor(() => read().includes('WATCHDOG=1'), 5000, 'a watchdog ping');
  const exited = new Promise((r) => daemon.once('exit', r));
  daemon.kill('SIGTERM');
  await exited;
  await waitFor(() => read().includes('STOPPING=1'), 5000, 'STOPPING=1');
  t.pass('READY, WATCHDOG and STOPPING arrived');
});

t.test('the Dockerfile is multi-stage, non-root, health-checked, and copies only what exists', async (t) => {
  const text = readFileSync(join(root, 'deploy/docker/Dockerfile'), 'utf8');
  const lines = text.split('\n').filter((l) => l && !l.startsWith('#'));
  t.equal(lines.filter((l) => l.startsWith('FROM ')).length, 2, 'two stages');
  t.match(text, /^USER (?!root)\S+/m, 'runs as a non-root user');
  t.match(text, /^HEALTHCHECK /m);
  for (const l of lines.filter((x) => x.startsWith('COPY ') && !x.includes('--from='))) {
    const parts = l.split(/\s+/).slice(1, -1);
    for (const p of parts) t.ok(existsSync(join(root, p)), `COPY source ${p} exists`);
  }
  const ignore = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n');
  t.ok(ignore.includes('node_modules') && ignore.includes('.git'), '.dockerignore keeps the context small');
});

t.test('Terraform: every var.X is declared, every declared variable is used, braces balance', async (t) => {
  const dir = join(root, 'deploy/azure/terraform');
  const tf = readdirSync(dir)
    .filter((f) => f.endsWith('.tf'))
    .map((f) => readFileSync(join(dir, f), 'utf8'));
  const all = tf.join('\n');
  const declared = new Set([...all.matchAll(/^variable "([^"]+)"/gm)].map((m) => m[1]!));
  const used = new Set([...all.matchAll(/\bvar\.([A-Za-z0-9_]+)/g)].map((m) => m[1]!));
  for (const u of used) t.ok(declared.has(u), `var.${u} is declared`);
  for (const d of declared) t.ok(used.has(d), `variable ${d} is used`);
  for (const [i, text] of tf.entries()) {
    const stripped = text.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/#.*$/gm, '');
    t.equal((stripped.match(/\{/g) ?? []).length, (stripped.match(/\}/g) ?? []).length, `file ${i}: braces balance`);
  }
  for (const r of [
    'azurerm_eventhub_namespace',
    'azurerm_eventhub_consumer_group',
    'azurerm_storage_account',
    'azurerm_key_vault',
    'azurerm_log_analytics_workspace',
    'azurerm_container_app',
    'azurerm_private_endpoint',
  ]) {
    t.match(all, new RegExp(`resource "${r}"`), `${r} is defined`);
  }
  t.match(all, /is_hns_enabled\s*=\s*true/, 'storage is ADLS Gen2');
});

t.test('Terraform: the twin API mounts an Azure Files share at the state dir its env names, in journal mode delete', async (t) => {
  const main = readFileSync(join(root, 'deploy/azure/terraform/main.tf'), 'utf8');
  const locals = [...main.matchAll(/^\s*(\w+)\s*=\s*"([^"]*)"\s*(#.*)?$/gm)];
  const resolve = (v: string | undefined): string | undefined => {
    const local = /^local\.(\w+)$/.exec(v ?? '')?.[1];
    return local ? locals.find((m) => m[1] === local)?.[2] : v?.replace(/^"|"$/g, '');
  };

  const share = hclBlock(main, /resource "azurerm_storage_share" "(\w+)"/);
  const shareName = /resource "azurerm_storage_share" "(\w+)"/.exec(main)?.[1];
  t.ok(share, 'a file share is defined');
  t.match(attr(share, 'enabled_protocol') ?? '"SMB"', /"SMB"/, 'an SMB share (what Container Apps mounts without a VNet)');
  const account = /^azurerm_storage_account\.(\w+)\.id$/.exec(attr(share, 'storage_account_id') ?? '')?.[1];
  t.ok(account, 'the share names its storage account');
  const acct = hclBlock(main, new RegExp(`resource "azurerm_storage_account" "${account}"`));
  t.match(attr(acct, 'shared_access_key_enabled'), /^true$/, 'its account allows the key the SMB mount uses');

  const envStorage = hclBlock(main, /resource "azurerm_container_app_environment_storage" "(\w+)"/);
  const envStorageName = /resource "azurerm_container_app_environment_storage" "(\w+)"/.exec(main)?.[1];
  t.equal(attr(envStorage, 'share_name'), `azurerm_storage_share.${shareName}.name`, 'the environment storage is that share');
  t.equal(attr(envStorage, 'account_name'), `azurerm_storage_account.${account}.name`);
  t.equal(attr(envStorage, 'access_mode'), '"ReadWrite"');
  t.equal(attr(envStorage, 'container_app_environment_id'), 'azurerm_container_app_environment.this.id');

  const app = hclBlock(main, /resource "azurerm_container_app" "twin_api"/);
  const volume = hclBlock(app, /^\s*volume \{/m);
  t.equal(attr(volume, 'storage_type'), '"AzureFile"');
  t.equal(
    attr(volume, 'storage_name'),
    `azurerm_container_app_environment_storage.${envStorageName}.name`,
    'the volume is the environment storage',
  );
  t.match(attr(volume, 'mount_options'), /\bnobrl\b/, 'SQLite needs nobrl on CIFS');
  const volumeName = resolve(attr(volume, 'name'));
  const mount = hclBlock(app, /^\s*volume_mounts \{/m);
  t.equal(resolve(attr(mount, 'name')), volumeName, 'the container mounts that volume');
  const mountPath = resolve(attr(mount, 'path'));
  t.ok(mountPath?.startsWith('/'), `mounted at ${mountPath}`);

  const env = new Map([...app.matchAll(/env \{\s*name\s*=\s*"(\w+)"\s*value\s*=\s*(.+?)\s*\}/g)].map((m) => [m[1]!, m[2]!]));
  t.equal(resolve(env.get('EDGETWIN_CLOUD_STATE_DIR')), mountPath, 'EDGETWIN_CLOUD_STATE_DIR is the mount path');
  t.equal(resolve(env.get('EDGETWIN_DB_JOURNAL_MODE')), 'delete', 'SQLite on the share runs without WAL');
  t.equal(attr(hclBlock(app, /^\s*template \{/m), 'max_replicas'), 'local.api_max_replicas');
  t.match(app, /condition\s*=\s*local\.pg \|\| local\.api_max_replicas == 1/, 'one replica on SQLite, enforced');
});
