/**
 * The Terraform's operations parts (issue 17): the audit container keeps every segment immutable
 * for 7 years under a locked time-based policy, the cloud is told where it is and may write it,
 * Log Analytics keeps a year, and the Azure Monitor alerts cover the alert engine's platform rule
 * kinds and reach an action group. Text checks (no terraform binary here): what is asserted is
 * what a reviewer would look for.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { RULE_KINDS } from '../../cloud/alerts/rules.js';

const dir = fileURLToPath(new URL('../../deploy/azure/terraform', import.meta.url));
const all = readdirSync(dir)
  .filter((f) => f.endsWith('.tf'))
  .map((f) => readFileSync(join(dir, f), 'utf8'))
  .join('\n');
const variable = (name: string): string =>
  new RegExp(`variable "${name}" \\{[\\s\\S]*?default\\s*=\\s*([^\\n]+)`).exec(all)?.[1]?.trim() ?? '';

t.test('audit container: time-based immutability for 7 years, locked, written by the cloud', async (t) => {
  t.match(all, /resource "azurerm_storage_container_immutability_policy" "audit"/);
  t.match(all, /immutability_period_in_days\s*=\s*var\.audit_retention_days/);
  t.equal(Number(variable('audit_retention_days')), 2557, '7 years (365 × 7 + 2 leap days)');
  t.match(all, /locked\s*=\s*var\.audit_immutability_locked/);
  t.equal(variable('audit_immutability_locked'), 'true', 'locked unless an operator opts out');
  t.match(
    all,
    /shared_access_key_enabled\s*=\s*false[\s\S]*?resource "azurerm_storage_container" "audit"/,
    'identity only, no account key',
  );
  t.match(all, /name\s*=\s*"EDGETWIN_AUDIT_BLOB_URL"/, 'the cloud is told where to upload');
  t.match(all, /resource "azurerm_role_assignment" "cloud_audit"[\s\S]*?azurerm_user_assigned_identity\.cloud\.principal_id/);
});

t.test('Log Analytics keeps 365 days', async (t) => {
  t.match(all, /retention_in_days\s*=\s*var\.log_retention_days/);
  t.equal(Number(variable('log_retention_days')), 365);
});

t.test('Azure Monitor: an action group, and log alerts for the engine platform rule kinds', async (t) => {
  t.match(all, /resource "azurerm_monitor_action_group" "ops"/);
  const kinds = [...all.matchAll(/\bkind\s*=\s*"([a-z0-9_]+)"/g)].map((m) => m[1]!);
  for (const k of ['eventhubs_lag', 'api_p99', 'lake_writer_failing', 'data_quality']) t.ok(kinds.includes(k), `log alert for ${k}`);
  for (const k of kinds) t.ok((RULE_KINDS as readonly string[]).includes(k), `${k} is a rule kind the engine has`);
  t.match(all, /action_groups\s*=\s*\[azurerm_monitor_action_group\.ops\.id\]/);
  t.ok((all.match(/action_group_id\s*=\s*azurerm_monitor_action_group\.ops\.id/g) ?? []).length >= 3, 'metric alerts use it too');
});
