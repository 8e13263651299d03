/**
 * The agent commits nothing the lakehouse cannot store, whatever the source (issue 13): a lone
 * surrogate, a non-finite number, a sample time outside `timestamps` are refused with
 * EDGETWIN_ERR_BAD_VALUE and counted; input records say which reading; text timestamps without an
 * offset are UTC; the readings around a refused one are sent as usual.
 */
import { join } from 'node:path';
import t from 'tap';
import { parseReadings, toReading } from '../../agent/sources/reading-input.js';
import type { Source, SourceContext } from '../../agent/types.js';
import { timestampWindow } from '../../common/wire/storable.js';
import { TestBroker, startAgent, tempDir, waitFor } from '../helpers/stack.js';

const now = Date.UTC(2026, 5, 1, 12);
const window = timestampWindow({ notBefore: '2000-01-01T00:00:00Z', maxFutureMs: 3_600_000 });

t.test('input records: unstorable values and sample times outside the window are refused with a code and a path', async (t) => {
  t.throws(() => toReading({ metric: 't', value: 1, unit: '\ud800' }, now, 'readings[2]', window), {
    code: 'EDGETWIN_ERR_BAD_VALUE',
    details: { path: 'readings[2].unit' },
  });
  t.throws(() => toReading({ ts: 5, metric: 't', value: 1, unit: 'C' }, now, 'reading', window), {
    code: 'EDGETWIN_ERR_BAD_VALUE',
    message: /reading\.ts: .*notBefore/,
  });
  t.throws(() => toReading({ ts: now + 7_200_000, metric: 't', value: 1, unit: 'C' }, now, 'reading', window), {
    code: 'EDGETWIN_ERR_BAD_VALUE',
    message: /maxFutureMs/,
  });
  t.throws(() => toReading({ ts: 1e300, metric: 't', value: 1, unit: 'C' }, now), { code: 'EDGETWIN_ERR_BAD_VALUE' });
  t.throws(() => toReading({ ts: 'March 7 2020', metric: 't', value: 1, unit: 'C' }, now), {
    code: 'EDGETWIN_ERR_BAD_READING',
    message: /ISO 8601/,
  });
  t.equal(
    toReading({ ts: '2026-06-01 11:00:00', metric: 't', value: 1, unit: 'C' }, now, 'r', window).ts,
    Date.UTC(2026, 5, 1, 11),
    'no offset: UTC',
  );
  t.equal(toReading({ ts: '2026-06-01T13:00:00+02:00', metric: 't', value: 1, unit: 'C' }, now, 'r', window).ts, Date.UTC(2026, 5, 1, 11));
  t.equal(toReading({ metric: 't', value: 1, unit: '\ud83d\ude00' }, now, 'r', window).unit, '\ud83d\ude00', 'a surrogate pair is fine');
  t.throws(
    () =>
      parseReadings(
        [
          { metric: 't', value: 1, unit: 'C' },
          { metric: 't', value: 2, unit: 'x\udc00' },
        ],
        now,
        window,
      ),
    {
      code: 'EDGETWIN_ERR_BAD_VALUE',
      details: { path: 'readings[1].unit' },
    },
  );
});

/** Emits what a buggy driver might: good readings around unstorable ones. */
class PoisonSource implements Source {
  readonly name = 'poison';
  start(ctx: SourceContext): void {
    const ts = Date.now();
    ctx.emit([
      { ts, metric: 'a', value: 1, unit: 'C' },
      { ts, metric: 'b', value: 2, unit: '\ud800' },
      { ts, metric: 'c', value: Number.NaN, unit: 'C' },
      { ts: 1_000, metric: 'd', value: 4, unit: 'C' },
      { ts: ts + 10 * 86_400_000, metric: 'e', value: 5, unit: 'C' },
      { ts, metric: 'f', value: 6, unit: 'C' },
    ]);
  }
  stop(): void {}
}

t.test('the agent commits nothing the lake cannot store, whatever the source; the rest goes out', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const broker = new TestBroker();
  const port = await broker.start();
  t.teardown(() => broker.stop());
  const agent = await startAgent(join(dir, 'agent'), 'poison-1', port, [new PoisonSource()], {
    scoring: { enabled: false },
    twin: { enabled: false },
  });
  t.teardown(() => agent.stop());
  await waitFor(() => broker.batches.flatMap((b) => b.readings).length >= 2, 10_000, 'the good readings sent');
  t.same(
    broker.batches.flatMap((b) => b.readings.map((r) => [r.metric, r.seq])),
    [
      ['a', 1],
      ['f', 2],
    ],
    'only the storable readings, with consecutive seqs',
  );
  const metrics = await agent.registry.metrics();
  t.match(
    metrics,
    /edgetwin_agent_rejected_total\{source="commit",code="EDGETWIN_ERR_BAD_VALUE"[^}]*\} 4/,
    'each refusal counted with its code',
  );
});

/** Emits one list of readings once, at start. */
class OnceSource implements Source {
  readonly name = 'once';
  constructor(private readonly metrics: string[]) {}
  start(ctx: SourceContext): void {
    const ts = Date.now();
    ctx.emit(this.metrics.map((metric, i) => ({ ts, metric, value: i, unit: 'C' })));
  }
  stop(): void {}
}

t.test('limits.metricsPerDevice: a new metric name past the cap is refused before commit, across restarts', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const broker = new TestBroker();
  const port = await broker.start();
  t.teardown(() => broker.stop());
  const limits = { limits: { metricsPerDevice: 3 }, scoring: { enabled: false }, twin: { enabled: false } };
  const sent = (): string[] => broker.batches.flatMap((b) => b.readings.map((r) => r.metric));
  const first = await startAgent(join(dir, 'agent'), 'names-1', port, [new OnceSource(['a', 'b', 'c', 'd', 'a', 'e'])], limits);
  await waitFor(() => sent().length >= 4, 10_000, 'the readings within the cap sent');
  t.same(sent(), ['a', 'b', 'c', 'a'], 'three names, the fourth and fifth refused; a known name is never refused');
  t.match(
    await first.registry.metrics(),
    /edgetwin_agent_rejected_total\{source="commit",code="EDGETWIN_ERR_LIMIT_EXCEEDED"[^}]*\} 2/,
    'each refusal counted with its code',
  );
  await first.stop();
  // The names are kept in the outbox: a restart does not hand out three fresh ones.
  const second = await startAgent(join(dir, 'agent'), 'names-1', port, [new OnceSource(['d', 'b', 'c'])], limits);
  t.teardown(() => second.stop());
  await waitFor(() => sent().length >= 6, 10_000, 'the known names sent after the restart');
  t.same(sent().slice(4), ['b', 'c'], 'after a restart the cap still holds: d refused, b and c go out');
});
