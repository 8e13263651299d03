/**
 * `edgetwin status` (compiled CLI) asks a running agent, collector and cloud for their health and
 * prints one line each; a daemon that is gone shows as unreachable and the exit code says so.
 */
import { join } from 'node:path';
import t from 'tap';
import { runCliAsync } from '../helpers/cli.js';
import { CountingSource, startAgent, startCloud, startCollector, tempDir, waitFor } from '../helpers/stack.js';

t.test('status: one line per daemon, health in the exit code, --json for scripts', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startCloud(join(dir, 'cloud'));
  t.teardown(() => cloud.stop());
  const collector = await startCollector(join(dir, 'collector'), cloud.url, 0, { admin: { enabled: true, port: 0 } });
  t.teardown(() => collector.stop());
  const source = new CountingSource(200, 20);
  const agent = await startAgent(join(dir, 'agent'), 'status-1', collector.mqttPort, [source], { admin: { enabled: true, port: 0 } });
  await waitFor(() => source.done && agent.outbox.depth().rows === 0, 20_000, 'agent drained');
  const agentUrl = `http://127.0.0.1:${agent.adminPort}`;
  const collectorUrl = `http://127.0.0.1:${collector.adminPort}`;

  const r = await runCliAsync(['status', agentUrl, collectorUrl, cloud.url]);
  t.equal(r.status, 0, `all healthy:\n${r.stdout}${r.stderr}`);
  const lines = r.stdout.trim().split('\n');
  t.equal(lines.length, 3, 'one line per daemon');
  t.match(lines[0], new RegExp(`^agent\\s+${agentUrl}\\s+ok\\s+connected · outbox 0 rows / 0 B · epoch 1`));
  t.match(lines[1], new RegExp(`^collector\\s+${collectorUrl}\\s+ok\\s+clients 1 · spool \\d+ rows / [\\d,]+ B · sinks http ok`));
  t.match(lines[2], new RegExp(`^cloud\\s+${cloud.url}\\s+ok\\s+lakehouse staged \\d+ batches / [\\d,]+ B · last flush `));

  const j = await runCliAsync(['status', '--json', agentUrl]);
  const doc = JSON.parse(j.stdout) as { url: string; ok: boolean; health: { outbox: { rows: number } } }[];
  t.same([doc[0]!.url, doc[0]!.ok, doc[0]!.health.outbox.rows], [agentUrl, true, 0], '--json carries the health document');

  await agent.stop();
  const down = await runCliAsync(['status', '--timeout-ms', '2000', agentUrl, cloud.url]);
  t.equal(down.status, 1, 'exit 1 when a daemon does not answer');
  t.match(down.stdout, new RegExp(`${agentUrl}\\s+NOT OK\\s+unreachable: `));
  t.match(down.stdout, new RegExp(`${cloud.url}\\s+ok`), 'the others are still reported');
});
