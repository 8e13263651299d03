/**
 * Commands in docs/runbooks that transform data are run here as they are written, on real data,
 * so that a runbook cannot drift from the code it relies on.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parseReadings } from '../../agent/sources/reading-input.js';
import { SqliteOutbox } from '../../common/outbox/outbox.js';
import { encodeReading, type Reading } from '../../common/wire/record.js';
import { tempDir } from '../helpers/util.js';

const root = new URL('../..', import.meta.url).pathname;

/** The body of the first `node -e '…'` in a runbook step (the script between the single quotes). */
function nodeScript(runbook: string, step: string): string {
  const text = readFileSync(join(root, 'docs/runbooks', runbook), 'utf8');
  const from = text.indexOf(step);
  const m = /node -e '([^']+)'/.exec(text.slice(from));
  if (from < 0 || !m) throw new Error(`no node -e script after "${step}" in ${runbook}`);
  return m[1]!;
}

t.test('recover a corrupted outbox, step 3: salvaged agent rows become lines the JSON-lines input accepts', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  // Rows as the agent writes them: scored readings with seq, score and model; some alerts.
  const outbox = new SqliteOutbox({ path: join(dir, 'outbox.db'), maxBytes: 1 << 20, whenFull: 'drop_oldest', synchronous: 'normal' });
  const readings: Reading[] = Array.from({ length: 20 }, (_, i) => ({
    seq: i + 1,
    ts: 1_763_900_000_000 + i * 1000,
    metric: i % 2 ? 'temperature' : 'vibration_rms',
    value: i * 1.25,
    unit: i % 2 ? 'degC' : 'mm/s',
    score: i / 20,
    model: 'forecaster-1.0.0',
    ...(i % 7 === 0 ? { alert: true } : {}),
  }));
  outbox.append(readings.map((r) => ({ body: encodeReading(r), grp: 3 })));
  // What `sqlite3 -json salvaged.db "SELECT body FROM queue ORDER BY id"` prints.
  const exported = JSON.stringify(outbox.db.prepare('SELECT body FROM queue ORDER BY id').all());
  outbox.close();

  const run = spawnSync(process.execPath, ['-e', nodeScript('recover-a-corrupted-outbox.md', '3. Resend the salvaged readings')], {
    input: exported,
    encoding: 'utf8',
  });
  t.equal(run.status, 0, run.stderr);
  const lines = run.stdout.trim().split('\n');
  t.equal(lines.length, readings.length, 'one line per salvaged row');
  const now = Date.now();
  const parsed = lines.map((l, i) => {
    try {
      return parseReadings(JSON.parse(l), now)[0]!;
    } catch (err) {
      t.fail(`line ${i + 1} refused by the agent's input: ${String(err)}`);
      return undefined;
    }
  });
  t.same(
    parsed,
    readings.map((r) => ({ ts: r.ts, metric: r.metric, value: r.value, unit: r.unit, ...(r.alert ? { alert: true } : {}) })),
    'sample times, values, units and alert flags kept; seq, score and model dropped',
  );
});
