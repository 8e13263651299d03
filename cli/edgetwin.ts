#!/usr/bin/env node
/**
 * edgetwin — one CLI for every deployable: `agent`, `collector`, `cloud`, and `demo`.
 */
import { parseArgs } from 'node:util';
import { loadAgentConfig } from '../agent/config.js';
import { createAgent } from '../agent/models/create-agent.js';
import { Cloud } from '../cloud/cloud.js';
import { loadCloudConfig } from '../cloud/config.js';
import { Collector } from '../collector/collector.js';
import { loadCollectorConfig } from '../collector/config.js';
import { EdgetwinError, ErrorCodes, errorMessage, isEdgetwinError } from '../common/errors.js';
import { BACKUP_HELP, runBackupCommand } from './backup.js';
import { runCloudAdmin } from './cloud-admin.js';
import { runCollectorDevices } from './collector-devices.js';
import { runDaemon } from './daemon.js';
import { runDemo } from './demo.js';
import { runStatus, STATUS_HELP } from './status.js';

const HELP: Record<string, string> = {
  backup: BACKUP_HELP,
  status: STATUS_HELP,
  restore: BACKUP_HELP,
  main: `edgetwin — edge-to-cloud IoT: field agent, site collector, cloud twin API

Usage: edgetwin <command> [options]

Commands:
  agent       run the field agent daemon (sensors → SQLite outbox → MQTT QoS 1)
  collector   run the site collector (MQTT broker → SQLite spool → cloud)
  cloud       run the cloud ingest and twin API
  demo        run a cloud, a collector and three simulated agents on loopback
  backup      back up a daemon's state directory while it runs
  restore     restore (or --verify) a backup into a stopped daemon's state directory
  status      one-screen health of running daemons (the demo's by default)

Run 'edgetwin <command> --help' for a command's options.
Environment: EDGETWIN_HOME (state directory, default ./var), EDGETWIN_LOG_LEVEL (default info).`,
  agent: `Usage: edgetwin agent [--config FILE]

Options:
  --config FILE   agent config, JSON or YAML (see docs/configuration.md)
  --help          show this help

Environment overrides: EDGETWIN_DEVICE_ID, EDGETWIN_AGENT_STATE_DIR, EDGETWIN_UPLINK_URL,
EDGETWIN_UPLINK_USERNAME, EDGETWIN_UPLINK_PASSWORD, EDGETWIN_UPLINK_SAS_KEY (base64 device key for
SAS tokens), EDGETWIN_UPLINK_SAS_KEY_FILE (secrets belong here or in mode-600 files, not in configs),
EDGETWIN_MODEL_PUBLIC_KEY_FILE (the model registry's public key: run only signed models).

Sources (sources.* in the config): simulator, csvReplay, jsonLines (stdin), modbusTcp, http
(POST /v1/readings on 127.0.0.1). /metrics and /healthz: admin.host:admin.port.
Scoring (scoring.* in the config): on when models/manifest.json is found; desired "model" and
"thresholds" are followed live (docs/anomaly-detection.md).`,
  collector: `Usage: edgetwin collector [--config FILE]
       edgetwin collector devices <add|list|revoke|token> ...   (run 'edgetwin collector devices --help')

Options:
  --config FILE   collector config, JSON or YAML (see docs/configuration.md)
  --help          show this help

Environment overrides: EDGETWIN_SITE_ID, EDGETWIN_COLLECTOR_STATE_DIR, EDGETWIN_CLOUD_URL,
EDGETWIN_CLOUD_TOKEN (the site's ingest token), EDGETWIN_COLLECTOR_AUTH_MODE (registry | open),
EDGETWIN_EVENTHUBS_CONNECTION_STRING, EDGETWIN_EVENTHUBS_NAMESPACE, EDGETWIN_EVENTHUBS_NAME.`,
  cloud: `Usage: edgetwin cloud [--config FILE]
       edgetwin cloud <tokens|compact|retention> ...   (run 'edgetwin cloud tokens --help')

Options:
  --config FILE   cloud config, JSON or YAML (see docs/configuration.md)
  --help          show this help

Environment overrides: EDGETWIN_CLOUD_STATE_DIR, EDGETWIN_CLOUD_PORT,
EDGETWIN_INGEST_TOKENS (comma-separated collector tokens), EDGETWIN_LAKEHOUSE_ROOT,
EDGETWIN_EVENTHUBS_CONNECTION_STRING, EDGETWIN_CHECKPOINT_BLOB_CONNECTION_STRING,
EDGETWIN_MODEL_SIGNING_KEY_FILE (Ed25519 key, mode 600: sign uploaded models).`,
  demo: `Usage: edgetwin demo [options]

Starts, on 127.0.0.1, one cloud twin API, one site collector and three simulated agents, each as
its own process, with state under $EDGETWIN_HOME/demo (default ./var/demo). Ctrl-C stops all.

Options:
  --cloud-port N   twin API port (default 8480)
  --mqtt-port N    collector MQTT port (default 1883)
  --agents N       number of simulated agents (default 3)
  --help           show this help`,
};

function usage(msg: string): never {
  throw new EdgetwinError(ErrorCodes.USAGE, msg);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${HELP['main']}\n`);
    return;
  }
  if (!(command in HELP) || command === 'main') usage(`unknown command "${command}"; run 'edgetwin --help'`);
  if (command === 'status') {
    process.exitCode = await runStatus(rest, (l) => process.stdout.write(`${l}\n`));
    return;
  }
  if (command === 'backup' || command === 'restore') return runBackupCommand(command, rest, (l) => process.stdout.write(`${l}\n`));
  if (command === 'collector' && rest[0] === 'devices') return runCollectorDevices(rest.slice(1));
  if (command === 'cloud' && ['tokens', 'compact', 'retention'].includes(rest[0] ?? '')) return runCloudAdmin(rest);
  const { values } = parseArgs({
    args: rest,
    strict: true,
    options: {
      config: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      'cloud-port': { type: 'string' },
      'mqtt-port': { type: 'string' },
      agents: { type: 'string' },
    },
  });
  if (values.help) {
    process.stdout.write(`${HELP[command]}\n`);
    return;
  }
  switch (command) {
    case 'agent': {
      const cfg = loadAgentConfig(values.config);
      const agent = await createAgent(cfg);
      await runDaemon('agent', agent, () => ({ deviceId: cfg.deviceId, epoch: agent.identity.epoch, adminPort: agent.adminPort, httpPort: agent.httpPort }));
      return;
    }
    case 'collector': {
      const cfg = loadCollectorConfig(values.config);
      const collector = new Collector(cfg);
      await runDaemon('collector', collector, () => ({ mqttPort: collector.mqttPort, ports: collector.ports, adminPort: collector.adminPort }));
      return;
    }
    case 'cloud': {
      const cfg = loadCloudConfig(values.config);
      const cloud = new Cloud(cfg);
      await runDaemon('cloud', cloud, () => ({ url: cloud.url, port: cloud.port }));
      return;
    }
    case 'demo': {
      const int = (v: string | undefined, name: string, dflt: number): number => {
        if (v === undefined) return dflt;
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0) usage(`--${name} must be a whole number, got "${v}"`);
        return n;
      };
      await runDemo({
        cloudPort: int(values['cloud-port'], 'cloud-port', 8480),
        mqttPort: int(values['mqtt-port'], 'mqtt-port', 1883),
        agents: int(values.agents, 'agents', 3),
      });
      return;
    }
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  const code = isEdgetwinError(err) ? err.code : (err as { code?: string }).code;
  process.stderr.write(`edgetwin: ${errorMessage(err)}${code ? ` [${code}]` : ''}\n`);
  process.exit(isEdgetwinError(err, ErrorCodes.USAGE) || code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? 2 : 1);
});
