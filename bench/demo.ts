/**
 * `npm run bench:demo` — how long `npm start`'s demo takes from launch to three twins with live
 * telemetry at /v1/twins (the README promises under 10 s), over several cold starts.
 *   npm run bench:demo -- [--runs 5] [--json]   (runs compiled: dist/bench/demo.js)
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { freePort } from './support.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' }, json: { type: 'boolean', default: false } } });
const cli = new URL('../cli/edgetwin.js', import.meta.url).pathname;

async function once(): Promise<number> {
  const home = mkdtempSync(join(tmpdir(), 'edgetwin-bench-demo-'));
  const [cloudPort, mqttPort] = [await freePort(), await freePort()];
  const started = Date.now();
  const demo = spawn(process.execPath, [cli, 'demo', '--cloud-port', String(cloudPort), '--mqtt-port', String(mqttPort)], {
    env: { ...process.env, EDGETWIN_HOME: home },
    stdio: 'ignore',
  });
  try {
    for (;;) {
      if (Date.now() - started > 60_000) throw new Error('demo not live after 60 s');
      try {
        const r = await fetch(`http://127.0.0.1:${cloudPort}/v1/twins`);
        const body = (await r.json()) as { items: { reported: Record<string, unknown> }[] };
        if (body.items.length === 3 && body.items.every((i) => Object.keys(i.reported).length === 3)) return Date.now() - started;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    const exited = new Promise((r) => demo.once('exit', r));
    demo.kill('SIGINT');
    await exited;
    rmSync(home, { recursive: true, force: true });
  }
}

const times: number[] = [];
for (let i = 0; i < Number(values.runs); i++) times.push(await once());
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)]!;
console.log('demo cold start → three live twins');
console.log(`runs        ${times.length}`);
console.log(`median_ms   ${median}`);
console.log(`max_ms      ${times[times.length - 1]}`);
console.log(`target      < 10000 ms  ${median < 10_000 ? 'met' : 'NOT met'}`);
if (values.json)
  console.log(
    JSON.stringify({ runs: times.length, startup_median_ms: median, startup_max_ms: times[times.length - 1], target_ms: 10_000 }),
  );
