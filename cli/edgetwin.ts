#!/usr/bin/env node
/**
 * edgetwin — one CLI for every deployable: `agent`, `collector`, `cloud`, and `demo`.
 */
import { parseArgs } from 'node:util';
import { Agent } from '../agent/agent.js';
import { loadAgentConfig } from '../agent/config.js';
import { Cloud } from '../cloud/cloud.js';
import { loadCloudConfig } from '../cloud/config.js';
import { Collector } from '../collector/collector.js';
import { loadCollectorConfig } from '../collector/config.js';
import { EdgetwinError, ErrorCodes, errorMessage, isEdgetwinError } from '../common/errors.js';
import { runDaemon } from './daemon.js';
import { runDemo } from './demo.js';

const HELP: Record<string, string> = {
  main: `edgetwin — edge-to-cloud IoT: field agent, site collector, cloud twin API

Usage: edgetwin <command> [options]

Commands:
  agent       run the field agent daemon (sensors → SQLite outbox → MQTT QoS 1)
  collector   run the site collector (MQTT broker → SQLite spool → cloud)
  cloud       run the cloud ingest and twin API
  demo        run a cloud, a collector and three simulated agents on loopback

Run 'edgetwin <command> --help' for a command's options.
Environment: EDGETWIN_HOME (state directory, default ./var), EDGETWIN_LOG_LEVEL (default info).`,
  agent: `Usage: edgetwin agent [--config FILE]

Options:
  --config FILE   agent config, JSON or YAML (see docs/configuration.md)
  --help          show this help

Environment overrides: EDGETWIN_DEVICE_ID, EDGETWIN_AGENT_STATE_DIR, EDGETWIN_UPLINK_URL,
EDGETWIN_UPLINK_USERNAME, EDGETWIN_UPLINK_PASSWORD (secrets belong here, not in files).`,
  collector: `Usage: edgetwin collector [--config FILE]

Options:
  --config FILE   collector config, JSON or YAML (see docs/configuration.md)
  --help          show this help

Environment overrides: EDGETWIN_SITE_ID, EDGETWIN_COLLECTOR_STATE_DIR, EDGETWIN_CLOUD_URL,
EDGETWIN_CLOUD_TOKEN (the site's ingest token).`,
  cloud: `Usage: edgetwin cloud [--config FILE]

Options:
  --config FILE   cloud config, JSON or YAML (see docs/configuration.md)
  --help          show this help

Environment overrides: EDGETWIN_CLOUD_STATE_DIR, EDGETWIN_CLOUD_PORT,
EDGETWIN_INGEST_TOKENS (comma-separated collector tokens).`,
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
      const agent = new Agent(cfg);
      await runDaemon('agent', agent, () => ({ deviceId: cfg.deviceId, epoch: agent.identity.epoch }));
      return;
    }
    case 'collector': {
      const cfg = loadCollectorConfig(values.config);
      const collector = new Collector(cfg);
      await runDaemon('collector', collector, () => ({ mqttPort: collector.mqttPort, adminPort: collector.adminPort }));
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
