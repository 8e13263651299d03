/**
 * `npm run fuzz` — the fuzz suites at length (the tests run them at factor 1): MQTT against the
 * collector, HTTP against the cloud, bad input against the agent, seeded and reproducible.
 * Exits 1 when any suite shows a crash, lost good data, an unknown error code or a bad answer.
 *
 *   npm run fuzz -- [--seed N] [--factor 10] [--suite mqtt|http|agent|modbus|agent-all|property]... [--loris-wait-s 35] [--json]
 *
 * `property` is the property-based run (fast-check, bench/fuzz/property.ts): mutated inputs at every
 * boundary (agent inputs, MQTT, HTTP ingest, Event Hubs bodies), then the lake writer must have
 * nothing pending and every good reading must be in silver.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { propertySuite } from './property.js';
import { agentSuite, fuzzFailures, httpSuite, mqttSuite, type Scale } from './suites.js';

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    factor: { type: 'string', default: '10' },
    suite: { type: 'string', multiple: true },
    json: { type: 'boolean', default: false },
    /** How long slow-loris sockets are watched for the collector's CONNECT timeout; 0 skips it (the tests). */
    'loris-wait-s': { type: 'string', default: '35' },
  },
});
const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 1_000_000);
const factor = Number(values.factor);
const wanted = values.suite ?? ['mqtt', 'http', 'agent', 'modbus', 'property'];
const suites = {
  mqtt: mqttSuite,
  http: httpSuite,
  agent: (d: string, seed: number, s: Scale) => agentSuite(d, seed, s, 'inputs'),
  modbus: (d: string, seed: number, s: Scale) => agentSuite(d, seed, s, 'modbus'),
  // Not in the default list (`agent` and `modbus` cover it): both on one stack, for npm test.
  'agent-all': (d: string, seed: number, s: Scale) => agentSuite(d, seed, s, 'all'),
  property: (d: string, seed: number, s: Scale) => propertySuite(d, seed, s.factor),
} as const;

const args = process.argv.slice(2).filter((a, i, all) => a !== '--json' && a !== '--seed' && all[i - 1] !== '--seed');
const out: Record<string, unknown> = { command: ['npm run fuzz --', ...args, '--seed', String(seed)].join(' '), seed, factor };
const failures: string[] = [];
const started = Date.now();
process.stdout.write(`edgetwin fuzz: seed ${seed}, factor ${factor}, suites ${wanted.join(', ')}\n`);
for (const name of wanted) {
  const run = suites[name as keyof typeof suites];
  if (!run) throw new Error(`unknown suite "${name}" (mqtt, http, agent, modbus, agent-all, property)`);
  const dir = mkdtempSync(join(tmpdir(), `edgetwin-fuzz-${name}-`));
  const t0 = Date.now();
  const f = await run(dir, seed, { factor, lorisWaitMs: Number(values['loris-wait-s']) * 1000 });
  const why = name === 'property' ? (f as { failures: string[] }).failures.map((x) => `property: ${x}`) : fuzzFailures(name, f as never);
  failures.push(...why);
  out[name] = { ...f, seconds: Math.round((Date.now() - t0) / 1000) };
  process.stdout.write(`\n${name} (${Math.round((Date.now() - t0) / 1000)} s) ${why.length ? 'FAIL' : 'PASS'}\n`);
  for (const [k, v] of Object.entries(f))
    process.stdout.write(`  ${k.padEnd(38)} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}\n`);
  if (why.length === 0) rmSync(dir, { recursive: true, force: true });
  else process.stdout.write(`  state and logs kept in ${dir}\n`);
}
out['seconds'] = Math.round((Date.now() - started) / 1000);
out['ok'] = failures.length === 0;
out['failures'] = failures;
process.stdout.write(`\n${failures.length === 0 ? 'PASS' : `FAIL:\n${failures.map((f) => `  - ${f}`).join('\n')}`}\n`);
if (values.json) process.stdout.write(`${JSON.stringify(out)}\n`);
process.exit(failures.length === 0 ? 0 : 1);
