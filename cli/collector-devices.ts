/**
 * `edgetwin collector devices add|list|revoke|token`: manages the collector's device registry.
 * Works on the registry file directly (another process than the running collector): a revoke is
 * noticed by the collector within auth.revocationPollMs, which then drops the device's connection.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { DeviceCredential } from '../collector/registry/device-registry.js';
import { EdgetwinError, ErrorCodes } from '../common/errors.js';
import { createSasToken } from '../common/sas-token.js';
import { HELP_OPTION, intOption, parseSubcommand, str, usage, type OptionTable, type Subcommand } from './args.js';

const COMMON: OptionTable = {
  config: {
    type: 'string',
    value: 'FILE',
    help: 'collector config (the registry is auth.registryPath or <stateDir>/devices.db)',
    default: 'built-in defaults plus environment overrides',
  },
  registry: { type: 'string', value: 'FILE', help: 'the registry file, instead of --config', default: 'from --config' },
  json: { type: 'boolean', help: 'machine-readable output on stdout' },
  ...HELP_OPTION,
};

const SUBS: Record<string, Subcommand> = {
  '': {
    usage: 'Usage: edgetwin collector devices <add|list|revoke|token> [options]',
    about: `  add ID      register a device and print its credential (shown once)
  list        devices, their credential type and status (never secrets)
  revoke ID   revoke a device; a running collector disconnects it within auth.revocationPollMs
  token ID    print a SAS token for a sas device (its MQTT password)

Run 'edgetwin collector devices <add|list|revoke|token> --help' for each one's options.`,
    options: HELP_OPTION,
    group: true,
  },
  add: {
    usage: 'Usage: edgetwin collector devices add ID [options]',
    about: 'Registers a device and prints its credential once (a password is stored only as its scrypt hash).',
    options: {
      auth: {
        type: 'string',
        value: 'KIND',
        help: 'sas (prints key and connection string) | password | x509 (TLS client certificate with CN = ID, signed by mqtt.tls.caFile)',
        default: 'sas',
      },
      gateway: { type: 'string', value: 'HOST[:PORT]', help: 'adds GatewayHostName= to the printed connection string', default: 'none' },
      ...COMMON,
    },
    args: ['ID'],
  },
  list: {
    usage: 'Usage: edgetwin collector devices list [options]',
    about: 'Lists devices, their credential type and status (never secrets).',
    options: COMMON,
  },
  revoke: {
    usage: 'Usage: edgetwin collector devices revoke ID [options]',
    about: 'Revokes a device; a running collector disconnects it within auth.revocationPollMs.',
    options: COMMON,
    args: ['ID'],
  },
  token: {
    usage: 'Usage: edgetwin collector devices token ID [options]',
    about: 'Prints a SAS token for a sas device: the password it connects with.',
    options: { 'ttl-s': { type: 'string', value: 'N', help: 'token lifetime', unit: 's', default: '3600' }, ...COMMON },
    args: ['ID'],
  },
};

export async function runCollectorDevices(argv: string[], out: (s: string) => void = (s) => process.stdout.write(`${s}\n`)): Promise<void> {
  const picked = parseSubcommand('edgetwin collector devices', argv, SUBS, out);
  if (!picked) return;
  const { key: action, name, values } = picked;
  const id = picked.positionals[0] ?? '';
  // The collector's modules load only once the command line parsed: --help stays instant. The
  // registry's (SQLite, scrypt) only once the file is known to exist: a wrong path fails sooner.
  const { loadCollectorConfig } = await import('../collector/config.js');
  const cfg = loadCollectorConfig(str(values, 'config'));
  const path = str(values, 'registry') ?? cfg.auth.registryPath ?? join(cfg.stateDir, 'devices.db');
  // Only add may create a registry: a mistyped --registry or --config must not list an empty new one.
  if (action !== 'add' && !existsSync(path)) {
    throw new EdgetwinError(
      ErrorCodes.NOT_FOUND,
      `no device registry at ${path} (auth.registryPath or <stateDir>/devices.db); check --config/--registry, or add a device first`,
    );
  }
  const { DeviceRegistry } = await import('../collector/registry/device-registry.js');
  const registry = new DeviceRegistry(path);
  try {
    switch (action) {
      case 'add': {
        const auth = (str(values, 'auth') ?? 'sas') as DeviceCredential;
        if (!['sas', 'password', 'x509'].includes(auth)) usage(`${name}: --auth must be sas, password or x509, got "${auth}"`);
        const added = await registry.add(id, auth);
        let connectionString: string | undefined;
        if (added.key) {
          connectionString = `HostName=${cfg.auth.hostName};DeviceId=${id};SharedAccessKey=${added.key}`;
          if (str(values, 'gateway')) connectionString += `;GatewayHostName=${str(values, 'gateway')}`;
        }
        if (values.json) return out(JSON.stringify({ ...added, ...(connectionString ? { connectionString } : {}), registry: path }));
        out(`device ${id} added (credential: ${auth}) in ${path}`);
        if (added.key) out(`primary key:       ${added.key}\nconnection string: ${connectionString}`);
        if (added.password)
          out(`password:          ${added.password}\n(only its scrypt hash is stored: this is the only time it is shown)`);
        if (auth === 'x509') out(`the device connects over TLS with a client certificate whose CN is "${id}", signed by mqtt.tls.caFile`);
        return;
      }
      case 'list': {
        const devices = registry.list();
        if (values.json) return out(JSON.stringify(devices));
        if (devices.length === 0) return out('no devices');
        for (const d of devices) {
          out(
            `${d.id}\t${d.credential}\t${d.status}\t${new Date(d.createdAt).toISOString()}${d.revokedAt ? `\trevoked ${new Date(d.revokedAt).toISOString()}` : ''}`,
          );
        }
        return;
      }
      case 'revoke': {
        if (!registry.revoke(id)) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no active device "${id}" in ${path}`);
        out(
          values.json
            ? JSON.stringify({ id, status: 'revoked' })
            : `device ${id} revoked; a running collector drops it within ${cfg.auth.revocationPollMs} ms`,
        );
        return;
      }
      case 'token': {
        const dev = registry.get(id);
        if (!dev || dev.status !== 'active') throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no active device "${id}" in ${path}`);
        if (!dev.key) usage(`device "${id}" uses ${dev.credential}, not a SAS key`);
        const ttl = intOption(name, 'ttl-s', str(values, 'ttl-s'), 3600, 1, 10 * 365 * 86400);
        const token = createSasToken(`${cfg.auth.hostName}/devices/${id}`, dev.key, Math.floor(Date.now() / 1000) + ttl);
        out(values.json ? JSON.stringify({ id, token }) : token);
        return;
      }
    }
  } finally {
    registry.close();
  }
}
