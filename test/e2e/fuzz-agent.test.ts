/**
 * Bad input for a real agent process (seeded; `EDGETWIN_FUZZ_FACTOR=10` or `npm run fuzz` for the
 * long run): JSON lines and CSV files where half the records are broken, hostile bodies for the
 * local HTTP ingest, and a Modbus server answering garbage, exceptions, short frames, silence,
 * NaN and infinity. A bystander posts good readings throughout; all of them must reach silver.
 * Both attacks run at once on one agent (suite `agent-all`): one cloud, collector and agent to start
 * instead of two of each, and the broken Modbus source sits beside the healthy file sources. The
 * long run (`npm run fuzz`) still runs them apart as `agent` and `modbus`.
 */
import t from 'tap';
import { fuzzFactor as factor, runFuzzSuite, type Figures } from '../helpers/fuzz.js';

let figures: Figures | undefined;
/** The one run both tests read (started by whichever runs first, under its timeout). */
const allAtOnce = (): Figures => (figures ??= runFuzzSuite('agent-all', 99));

t.test(
  'broken JSON lines, CSV rows and HTTP bodies are refused one by one, counted, and cost nothing',
  { timeout: 170_000 * factor },
  async (t) => {
    const f = allAtOnce();
    const stored = f['agent_stored_by_metric'] as Record<string, number>;
    t.ok((f['agent_jsonl_bad'] as number) > 0 && (f['agent_csv_bad'] as number) > 0, 'the inputs hold bad records');
    t.equal(f['agent_jsonl_rejected_counted'], f['agent_jsonl_bad'], 'each bad JSON line counted (EDGETWIN_ERR_BAD_READING)');
    t.equal(f['agent_csv_rejected_counted'], f['agent_csv_bad'], 'each bad CSV row counted');
    t.ok((f['agent_http_rejected_counted'] as number) > 0, 'bad HTTP bodies and items counted');
    t.equal(
      f['agent_http_violations'],
      0,
      `HTTP ingest: no 5xx, codes on every error, good items of a mixed body taken (${JSON.stringify(f['agent_http_violation_samples'])})`,
    );
    t.equal(stored['jl'], f['agent_jsonl_good'], 'every good JSON line stored once');
    t.equal(stored['csv_a'], f['agent_csv_good'], 'every good CSV row stored once');
    t.equal(stored['http_good'], f['agent_http_good_accepted'], 'every accepted HTTP reading stored once');
    t.same(f.unknown_codes, [], 'known codes only');
    t.equal(f.crashes, 0, 'the agent never exited');
    t.equal(f['agent_batches_refused_by_collector'], 0, 'the agent never sent the collector a bad batch');
    t.equal(f.good_lost, 0, 'no good reading lost');
  },
);

t.test('a Modbus server answering garbage, exceptions, NaN and infinity', { timeout: 170_000 * factor }, async (t) => {
  const f = allAtOnce();
  const answers = f['agent_modbus_answers'] as Record<string, number>;
  t.ok(
    (answers['garbage'] ?? 0) + (answers['exception'] ?? 0) + (answers['nan'] ?? 0) > 0,
    `bad answers given: ${JSON.stringify(answers)}`,
  );
  t.ok((f['agent_modbus_source_errors'] as number) > 0, 'broken frames fail the source, which is counted and restarted');
  t.equal(f.crashes, 0, 'the agent never exited');
  t.equal(f['agent_non_finite_stored'], 0, 'no NaN or infinity ever stored');
  t.same(f.unknown_codes, [], 'known codes only');
  t.ok((f['agent_bystander_acked'] as number) > 10, `the bystander kept posting (${f['agent_bystander_acked']} acknowledged)`);
  // Fixed: the agent checks each reading against the wire schema before commit (agent.ts commit()).
  t.equal(f['agent_batches_refused_by_collector'], 0, 'the agent never sent the collector a bad batch');
  t.equal(f.good_lost, 0, 'no good reading lost');
});
