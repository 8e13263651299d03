/**
 * The Terraform's scale-out parts (issue 14), as text checks (no terraform binary here): with
 * store_kind = "postgres" a zone-redundant Flexible Server with PITR backups and private access only
 * (delegated subnet + private DNS zone linked to the apps' VNet), Container Apps with at least 2
 * replicas and an HTTP scale rule, the store URL and password handed to the cloud under names its
 * config reads, the password never in the state, and a geo-redundant option for the lake.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { cloudStoreEnv } from '../../cloud/store/config.js';
import { hclAttr as attr, hclBlock as block } from '../helpers/hcl.js';

const dir = fileURLToPath(new URL('../../deploy/azure/terraform', import.meta.url));
const read = (f: string): string => readFileSync(join(dir, f), 'utf8');
const all = readdirSync(dir)
  .filter((f) => f.endsWith('.tf'))
  .map(read)
  .join('\n');
const main = read('main.tf');

const variable = (name: string): string => attr(block(all, new RegExp(`variable "${name}" \\{`)), 'default') ?? '';

t.test('PostgreSQL Flexible Server: zone-redundant HA, PITR backups, private access only', async (t) => {
  const server = block(all, /resource "azurerm_postgresql_flexible_server" "this"/);
  t.ok(server, 'the server is defined');
  t.equal(attr(server, 'count'), 'local.pg ? 1 : 0', 'only with store_kind = "postgres"');
  t.equal(attr(block(server, /high_availability/), 'mode'), '"ZoneRedundant"');
  t.equal(variable('postgres_high_availability'), 'true', 'HA on unless turned off');
  t.equal(attr(server, 'backup_retention_days'), 'var.postgres_backup_retention_days');
  t.equal(Number(variable('postgres_backup_retention_days')), 35, 'the longest PITR window by default');
  t.equal(attr(server, 'geo_redundant_backup_enabled'), 'var.postgres_geo_redundant_backup');
  t.equal(attr(server, 'public_network_access_enabled'), 'false');
  t.equal(attr(server, 'delegated_subnet_id'), 'azurerm_subnet.postgres[0].id');
  t.equal(attr(server, 'private_dns_zone_id'), 'azurerm_private_dns_zone.postgres[0].id');
  t.match(
    block(all, /resource "azurerm_subnet" "postgres"/),
    /name\s*=\s*"Microsoft\.DBforPostgreSQL\/flexibleServers"/,
    'subnet delegated',
  );
  t.match(attr(block(all, /resource "azurerm_private_dns_zone" "postgres"/), 'name'), /\.postgres\.database\.azure\.com"$/);
  const link = block(all, /resource "azurerm_private_dns_zone_virtual_network_link" "postgres"/);
  t.equal(attr(link, 'virtual_network_id'), 'azurerm_virtual_network.this[0].id', 'the zone resolves inside the VNet');
  t.equal(
    attr(block(main, /resource "azurerm_container_app_environment" "this"/), 'infrastructure_subnet_id'),
    'local.pg ? azurerm_subnet.apps[0].id : null',
    'the apps join that VNet',
  );
  t.not(variable('postgres_sku').startsWith('"B_'), true, 'not Burstable (no zone-redundant HA there)');
});

t.test('the store password never enters the state', async (t) => {
  t.notMatch(all, /administrator_password\s*=/, 'no plain administrator_password');
  t.match(all, /ephemeral "random_password" "store"/, 'generated as an ephemeral value');
  const server = block(all, /resource "azurerm_postgresql_flexible_server" "this"/);
  t.equal(attr(server, 'administrator_password_wo'), 'ephemeral.random_password.store[0].result', 'write-only on the server');
  const secret = block(all, /resource "azurerm_key_vault_secret" "store_password"/);
  t.equal(attr(secret, 'value_wo'), 'ephemeral.random_password.store[0].result', 'write-only into Key Vault');
  t.notMatch(secret, /^\s*value\s*=/m);
  t.equal(attr(server, 'administrator_password_wo_version'), attr(secret, 'value_wo_version'), 'rotated together');
  t.match(read('versions.tf'), /required_version\s*=\s*">= 1\.1[1-9]"/, 'write-only arguments need Terraform 1.11');
});

t.test('Container Apps: at least 2 replicas on PostgreSQL, an HTTP scale rule, the store under names the cloud reads', async (t) => {
  const app = block(main, /resource "azurerm_container_app" "twin_api"/);
  const template = block(app, /^\s*template \{/m);
  t.equal(attr(template, 'min_replicas'), 'local.api_min_replicas');
  t.match(all, /api_min_replicas\s*=\s*local\.pg \? max\(2, var\.twin_api_min_replicas\) : 1/, 'never fewer than 2 on PostgreSQL');
  const rule = block(template, /dynamic "http_scale_rule"/);
  t.match(rule, /concurrent_requests\s*=\s*tostring\(var\.twin_api_concurrent_requests\)/, 'scales on concurrent requests');
  t.match(app, /name\s*=\s*"EDGETWIN_STORE_KIND"\s*value\s*=\s*var\.store_kind/);
  const url = /EDGETWIN_STORE_URL\s*=\s*"([^"]+)"/.exec(app)?.[1] ?? '';
  t.match(url, /^postgres:\/\/\$\{local\.store_app_login\}@[^:]+:5432\//, 'the app role, session port 5432 and no password in the URL');
  t.match(url, /sslmode=require/);
  for (const n of ['EDGETWIN_STORE_KIND', 'EDGETWIN_STORE_URL']) t.ok(n in cloudStoreEnv, `${n} is read by the cloud config`);
  const pw = block(app, /dynamic "env" \{\s*for_each = local\.pg \? \[1\] : \[\]\s*content \{\s*name\s*=\s*"PGPASSWORD"/);
  t.match(pw, /secret_name\s*=\s*"store-password"/, 'the password comes from a secret reference');
  const secret = block(app, /dynamic "secret"/);
  t.match(secret, /name\s*=\s*"store-password"/);
  t.match(
    secret,
    /key_vault_secret_id\s*=\s*azurerm_key_vault_secret\.store_app_password\[0\]\.versionless_id/,
    "the app role's, from Key Vault",
  );
  t.match(secret, /identity\s*=\s*azurerm_user_assigned_identity\.cloud\.id/, 'read with the app identity');
});

t.test('least privilege: the replicas log in as the app role; only the setup-db job uses the admin', async (t) => {
  t.match(all, /store_app_login\s*=\s*"edgetwin_app"/);
  t.not(/store_app_login\s*=\s*"([^"]+)"/.exec(all)?.[1], /store_login\s*=\s*"([^"]+)"/.exec(all)?.[1], 'not the admin');
  const app = block(main, /resource "azurerm_container_app" "twin_api"/);
  t.notMatch(app, /store_password\[0\]/, "the app never references the admin's password");
  const appSecret = block(all, /resource "azurerm_key_vault_secret" "store_app_password"/);
  t.equal(attr(appSecret, 'value_wo'), 'ephemeral.random_password.store_app[0].result', 'generated, write-only');
  const job = block(all, /resource "azurerm_container_app_job" "setup_db"/);
  t.ok(job, 'the setup-db job is defined');
  t.equal(attr(job, 'count'), 'local.pg ? 1 : 0');
  t.match(job, /command\s*=\s*\["node", "dist\/cli\/edgetwin\.js", "cloud", "setup-db", "--app-role", local\.store_app_login\]/);
  t.match(job, /EDGETWIN_STORE_URL"\s*value\s*=\s*"postgres:\/\/\$\{local\.store_login\}@/, 'as the admin (the owner)');
  t.match(job, /name\s*=\s*"PGPASSWORD"\s*secret_name\s*=\s*"store-admin-password"/);
  t.match(job, /name\s*=\s*"EDGETWIN_APP_DB_PASSWORD"\s*secret_name\s*=\s*"store-app-password"/, 'the variable setup-db reads');
  t.match(job, /azurerm_key_vault_secret\.store_app_password\[0\]\.versionless_id/);
  t.match(read('outputs.tf'), /output "setup_db_command"/, 'the command to start it is an output');
});

t.test('the lake account has a geo-redundant option', async (t) => {
  t.equal(attr(block(main, /resource "azurerm_storage_account" "lake"/), 'account_replication_type'), 'var.lake_replication');
  t.match(block(all, /variable "lake_replication"/), /"GZRS", "RAGZRS"/);
  t.equal(variable('store_kind'), '"sqlite"', 'SQLite stays the default');
});
