#!/usr/bin/env node
/**
 * edgetwin — one CLI for every deployable: `agent`, `collector`, `cloud`, and `demo`.
 *
 * Each command loads its code only when it runs (dynamic import): an agent on a small device must
 * not parse the cloud's DuckDB, fastify and Azure SDKs at every start.
 */
import { ErrorCodes, errorMessage, isEdgetwinError } from '../common/errors.js';
import { HELP_OPTION, helpText, intOption, parseCommand, str, usage, type OptionTable } from './args.js';

const CONFIG_OPTION: OptionTable = {
  config: {
    type: 'string',
    value: 'FILE',
    help: 'config file, JSON or YAML (docs/configuration.md)',
    default: 'built-in defaults plus environment overrides',
  },
};

const DEMO_OPTIONS: OptionTable = {
  'cloud-port': { type: 'string', value: 'N', help: 'twin API port', unit: 'TCP port', default: '8480' },
  'mqtt-port': { type: 'string', value: 'N', help: 'collector MQTT port', unit: 'TCP port', default: '1883' },
  agents: { type: 'string', value: 'N', help: 'simulated agents to start', unit: 'count', default: '3' },
  ...HELP_OPTION,
};

const MAIN_HELP = helpText(
  'Usage: edgetwin <command> [options]',
  HELP_OPTION,
  `edgetwin — edge-to-cloud IoT: field agent, site collector, cloud twin API

Commands:
  agent       run the field agent daemon (sensors → SQLite outbox → MQTT QoS 1)
  collector   run the site collector (MQTT broker → SQLite spool → cloud)
              collector devices add|list|revoke|token: the device registry
  cloud       run the cloud ingest and twin API
              cloud tokens create|list|revoke, cloud compact, cloud retention, cloud backfill, cloud migrate,
              cloud setup-db, cloud audit verify: administration
  demo        run a cloud, a collector and three simulated agents on loopback
  backup      back up a daemon's state directory while it runs
  restore     restore (or --verify) a backup into a stopped daemon's state directory
  status      one-screen health of running daemons (the demo's by default)
  invoke      call a direct method on a device through the cloud (edgetwin invoke DEVICE METHOD)`,
  `Run 'edgetwin <command> --help' for a command's options.
Environment: EDGETWIN_HOME (state directory, default ./var), EDGETWIN_LOG_LEVEL (default info),
EDGETWIN_PROGRESS (auto | bar | lines | off: progress of long commands, default auto).`,
);

const DAEMON_HELP: Record<'agent' | 'collector' | 'cloud', string> = {
  agent: helpText(
    'Usage: edgetwin agent [--config FILE]',
    { ...CONFIG_OPTION, ...HELP_OPTION },
    `Runs the field agent. Sources (sources.* in the config): simulator, csvReplay, jsonLines (stdin),
modbusTcp, http (POST /v1/readings on 127.0.0.1). /metrics and /healthz: admin.host:admin.port.
Scoring (scoring.* in the config): on when models/manifest.json is found; desired "model" and
"thresholds" are followed live (docs/anomaly-detection.md).`,
    `Environment overrides: EDGETWIN_DEVICE_ID, EDGETWIN_AGENT_STATE_DIR, EDGETWIN_UPLINK_URL,
EDGETWIN_UPLINK_USERNAME, EDGETWIN_UPLINK_PASSWORD, EDGETWIN_UPLINK_SAS_KEY (base64 device key for
SAS tokens), EDGETWIN_UPLINK_SAS_KEY_FILE (secrets belong here or in mode-600 files, not in configs),
EDGETWIN_MODEL_PUBLIC_KEY_FILE (the model registry's public key: run only signed models).`,
  ),
  collector: helpText(
    `Usage: edgetwin collector [--config FILE]
       edgetwin collector devices <add|list|revoke|token> ...   (run 'edgetwin collector devices --help')`,
    { ...CONFIG_OPTION, ...HELP_OPTION },
    'Runs the site collector: MQTT broker (IoT Hub device protocol), SQLite spool, sinks to the cloud.',
    `Environment overrides: EDGETWIN_SITE_ID, EDGETWIN_COLLECTOR_STATE_DIR, EDGETWIN_CLOUD_URL,
EDGETWIN_CLOUD_TOKEN (the site's ingest token), EDGETWIN_COLLECTOR_AUTH_MODE (registry | open),
EDGETWIN_EVENTHUBS_CONNECTION_STRING, EDGETWIN_EVENTHUBS_NAMESPACE, EDGETWIN_EVENTHUBS_NAME.`,
  ),
  cloud: helpText(
    `Usage: edgetwin cloud [--config FILE]
       edgetwin cloud <tokens|compact|retention|backfill|migrate> ...   (run 'edgetwin cloud <sub> --help')`,
    { ...CONFIG_OPTION, ...HELP_OPTION },
    'Runs the cloud: ingest, twin API, lakehouse (Parquet history) and dashboard.',
    `Environment overrides: EDGETWIN_CLOUD_STATE_DIR, EDGETWIN_CLOUD_PORT,
EDGETWIN_INGEST_TOKENS (comma-separated collector tokens), EDGETWIN_LAKEHOUSE_ROOT,
EDGETWIN_EVENTHUBS_CONNECTION_STRING, EDGETWIN_CHECKPOINT_BLOB_CONNECTION_STRING,
EDGETWIN_MODEL_SIGNING_KEY_FILE (Ed25519 key, mode 600: sign uploaded models).`,
  ),
};

const DEMO_HELP = helpText(
  'Usage: edgetwin demo [options]',
  DEMO_OPTIONS,
  `Starts, on 127.0.0.1, one cloud twin API, one site collector and N simulated agents, each as
its own process, with state under $EDGETWIN_HOME/demo (default ./var/demo). Ctrl-C stops all.`,
);

const print = (l: string): void => void process.stdout.write(`${l}\n`);

async function runDaemonCommand(command: 'agent' | 'collector' | 'cloud', args: string[]): Promise<void> {
  const { values } = parseCommand(`edgetwin ${command}`, args, { ...CONFIG_OPTION, ...HELP_OPTION });
  if (values.help) return print(DAEMON_HELP[command]);
  const { runDaemon } = await import('./daemon.js');
  switch (command) {
    case 'agent': {
      const [{ loadAgentConfig }, { createAgent }] = await Promise.all([import('../agent/config.js'), import('../agent/create-agent.js')]);
      const cfg = loadAgentConfig(str(values, 'config'));
      const agent = await createAgent(cfg);
      return runDaemon('agent', agent, () => ({
        deviceId: cfg.deviceId,
        epoch: agent.identity.epoch,
        adminPort: agent.adminPort,
        httpPort: agent.httpPort,
      }));
    }
    case 'collector': {
      const [{ loadCollectorConfig }, { Collector }] = await Promise.all([
        import('../collector/config.js'),
        import('../collector/collector.js'),
      ]);
      const collector = new Collector(loadCollectorConfig(str(values, 'config')));
      return runDaemon('collector', collector, () => ({
        mqttPort: collector.mqttPort,
        ports: collector.ports,
        adminPort: collector.adminPort,
      }));
    }
    case 'cloud': {
      const [{ loadCloudConfig }, { Cloud }] = await Promise.all([import('../cloud/config.js'), import('../cloud/cloud.js')]);
      const cloud = new Cloud(loadCloudConfig(str(values, 'config')));
      return runDaemon('cloud', cloud, () => ({ url: cloud.url, port: cloud.port }), 9_000);
    }
  }
}

async function runDemoCommand(args: string[]): Promise<void> {
  const { values } = parseCommand('edgetwin demo', args, DEMO_OPTIONS);
  if (values.help) return print(DEMO_HELP);
  const { runDemo } = await import('./demo.js');
  await runDemo({
    cloudPort: intOption('edgetwin demo', 'cloud-port', str(values, 'cloud-port'), 8480, 0, 65535),
    mqttPort: intOption('edgetwin demo', 'mqtt-port', str(values, 'mqtt-port'), 1883, 0, 65535),
    agents: intOption('edgetwin demo', 'agents', str(values, 'agents'), 3, 0, 1000),
  });
}

const COMMANDS: Record<string, (args: string[]) => Promise<void>> = {
  agent: (a) => runDaemonCommand('agent', a),
  collector: async (a) => {
    if (a[0] !== 'devices') return runDaemonCommand('collector', a);
    const { runCollectorDevices } = await import('./collector-devices.js');
    return runCollectorDevices(a.slice(1));
  },
  cloud: async (a) => {
    if (!['tokens', 'compact', 'retention', 'backfill', 'migrate', 'setup-db', 'audit'].includes(a[0] ?? ''))
      return runDaemonCommand('cloud', a);
    const { runCloudAdmin } = await import('./cloud-admin.js');
    return runCloudAdmin(a);
  },
  demo: runDemoCommand,
  status: async (a) => {
    const { runStatus } = await import('./status.js');
    process.exitCode = await runStatus(a, print);
  },
  invoke: async (a) => {
    const { runInvoke } = await import('./invoke.js');
    process.exitCode = await runInvoke(a, print);
  },
  backup: async (a) => (await import('./backup.js')).runBackupCommand('backup', a, print),
  restore: async (a) => (await import('./backup.js')).runBackupCommand('restore', a, print),
};

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (!command || command === 'help') return print(MAIN_HELP);
  if (command.startsWith('-')) {
    parseCommand('edgetwin', argv, HELP_OPTION);
    return print(MAIN_HELP);
  }
  const run = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (!run) usage(`unknown command "${command}"; run 'edgetwin --help' for the list`);
  await run(rest);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  const code = isEdgetwinError(err) ? err.code : (err as { code?: string }).code;
  const msg = errorMessage(err);
  process.stderr.write(`${/^edgetwin[ :]/.test(msg) ? msg : `edgetwin: ${msg}`}${code ? ` [${code}]` : ''}\n`);
  process.exit(isEdgetwinError(err, ErrorCodes.USAGE) || code?.startsWith('ERR_PARSE_ARGS_') ? 2 : 1);
});
