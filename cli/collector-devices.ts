/**
 * `edgetwin collector devices add|list|revoke|token`: manages the collector's device registry.
 * Works on the registry file directly (another process than the running collector): a revoke is
 * noticed by the collector within auth.revocationPollMs, which then drops the device's connection.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadCollectorConfig } from '../collector/config.js';
import { DeviceRegistry, type DeviceCredential } from '../collector/registry/device-registry.js';
import { EdgetwinError, ErrorCodes } from '../common/errors.js';
import { createSasToken } from '../common/sas-token.js';

export const COLLECTOR_DEVICES_HELP = `Usage: edgetwin collector devices <add|list|revoke|token> [options]

  add ID      register a device and print its credential (shown once):
              --auth sas (default; prints key and connection string) | password | x509 (TLS client
              certificate with CN = ID, signed by mqtt.tls.caFile)
              --gateway HOST[:PORT]  adds GatewayHostName= to the printed connection string
  list        devices, their credential type and status (never secrets)
  revoke ID   revoke a device; a running collector disconnects it within auth.revocationPollMs
  token ID    print a SAS token for a sas device (the MQTT password), --ttl-s N (default 3600)

Options:
  --config FILE     collector config (the registry is auth.registryPath or <stateDir>/devices.db)
  --registry FILE   the registry file, instead of --config
  --json            machine-readable output`;

function usage(msg: string): never {
  throw new EdgetwinError(ErrorCodes.USAGE, msg);
}

export async function runCollectorDevices(argv: string[], out: (s: string) => void = (s) => process.stdout.write(`${s}\n`)): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      registry: { type: 'string' },
      auth: { type: 'string' },
      gateway: { type: 'string' },
      'ttl-s': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [action, id, ...extra] = positionals;
  if (values.help || !action) return out(COLLECTOR_DEVICES_HELP);
  if (extra.length > 0) usage(`unexpected arguments: ${extra.join(' ')}`);
  const cfg = loadCollectorConfig(values.config);
  const path = values.registry ?? cfg.auth.registryPath ?? join(cfg.stateDir, 'devices.db');
  const registry = new DeviceRegistry(path);
  try {
    switch (action) {
      case 'add': {
        if (!id) usage('devices add needs a device id');
        const auth = (values.auth ?? 'sas') as DeviceCredential;
        if (!['sas', 'password', 'x509'].includes(auth)) usage(`--auth must be sas, password or x509, got "${auth}"`);
        const added = await registry.add(id, auth);
        let connectionString: string | undefined;
        if (added.key) {
          connectionString = `HostName=${cfg.auth.hostName};DeviceId=${id};SharedAccessKey=${added.key}`;
          if (values.gateway) connectionString += `;GatewayHostName=${values.gateway}`;
        }
        if (values.json) return out(JSON.stringify({ ...added, ...(connectionString ? { connectionString } : {}), registry: path }));
        out(`device ${id} added (credential: ${auth}) in ${path}`);
        if (added.key) out(`primary key:       ${added.key}\nconnection string: ${connectionString}`);
        if (added.password) out(`password:          ${added.password}\n(only its scrypt hash is stored: this is the only time it is shown)`);
        if (auth === 'x509') out(`the device connects over TLS with a client certificate whose CN is "${id}", signed by mqtt.tls.caFile`);
        return;
      }
      case 'list': {
        const devices = registry.list();
        if (values.json) return out(JSON.stringify(devices));
        if (devices.length === 0) return out('no devices');
        for (const d of devices) {
          out(`${d.id}\t${d.credential}\t${d.status}\t${new Date(d.createdAt).toISOString()}${d.revokedAt ? `\trevoked ${new Date(d.revokedAt).toISOString()}` : ''}`);
        }
        return;
      }
      case 'revoke': {
        if (!id) usage('devices revoke needs a device id');
        if (!registry.revoke(id)) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no active device "${id}" in ${path}`);
        out(values.json ? JSON.stringify({ id, status: 'revoked' }) : `device ${id} revoked; a running collector drops it within ${cfg.auth.revocationPollMs} ms`);
        return;
      }
      case 'token': {
        if (!id) usage('devices token needs a device id');
        const dev = registry.get(id);
        if (!dev || dev.status !== 'active') throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no active device "${id}" in ${path}`);
        if (!dev.key) usage(`device "${id}" uses ${dev.credential}, not a SAS key`);
        const ttl = Number(values['ttl-s'] ?? 3600);
        if (!Number.isInteger(ttl) || ttl <= 0) usage(`--ttl-s must be a positive whole number, got "${values['ttl-s']}"`);
        const token = createSasToken(`${cfg.auth.hostName}/devices/${id}`, dev.key, Math.floor(Date.now() / 1000) + ttl);
        out(values.json ? JSON.stringify({ id, token }) : token);
        return;
      }
      default:
        usage(`unknown devices action "${action}"; run 'edgetwin collector devices --help'`);
    }
  } finally {
    registry.close();
  }
}
