/**
 * collector/broker/batch-scan.ts against the full check (JSON.parse plus the wire schema): whatever the
 * scan accepts, the full check must accept with the same number of readings. Inputs: the agent's
 * own encoding, hand-picked edge cases of JSON and of the schema, and seeded random mutations.
 */
import t from 'tap';
import { scanBatch } from '../../collector/broker/batch-scan.js';
import { parseDeviceMessage } from '../../collector/broker/iothub-telemetry.js';
import { checkBatch, encodeReading, spliceBatch, type Reading } from '../../common/wire/record.js';
import { mulberry32 } from '../../common/random.js';

const DEV = 'dev-1';

/** What the full path says: readings in a valid batch of DEV, or 0. */
function full(buf: Buffer): number {
  try {
    const b = checkBatch(JSON.parse(buf.toString('utf8')));
    return b.device === DEV ? b.readings.length : 0;
  } catch {
    return 0;
  }
}

function agentBatch(rs: Reading[], device = DEV): string {
  return spliceBatch(device, 3, rs.map(encodeReading));
}

const r = (seq: number, extra: Partial<Reading> = {}): Reading => ({
  seq,
  ts: 1_763_913_600_000 + seq,
  metric: 'temp.c',
  value: seq * 0.37 - 5,
  unit: 'degC',
  ...extra,
});

t.test("the agent's batches are taken by the scan, with their reading count", async (t) => {
  for (const rs of [
    [r(1)],
    [r(1), r(2, { score: 0.25, model: 'iforest-3', alert: true }), r(3, { value: 0 })],
    Array.from({ length: 500 }, (_, i) => r(i + 1)),
  ]) {
    const buf = Buffer.from(agentBatch(rs));
    t.equal(scanBatch(buf, DEV), rs.length);
    t.same(
      parseDeviceMessage(DEV, buf, () => new URLSearchParams(), 0),
      { kind: 'batch', readings: rs.length },
    );
  }
  t.equal(
    scanBatch(
      Buffer.from(' {\n"readings" : [ {"unit":"u","value":-0,"metric":"m","ts":0,"seq":0} ] ,"epoch":0,"device":"dev-1","v":1}\t'),
      DEV,
    ),
    1,
    'any key order and JSON whitespace',
  );
});

t.test('edge cases: the scan never accepts what the full check refuses', async (t) => {
  const good = agentBatch([r(1)]);
  const cases = [
    good.replace('"seq":1', '"seq":01'),
    good.replace('"seq":1', '"seq":1e0'),
    good.replace('"seq":1', '"seq":1.0'),
    good.replace('"seq":1', '"seq":-1'),
    good.replace('"seq":1', '"seq":12345678901234567890'),
    good.replace('"value":', '"value":1e400,"x":'),
    good.replace(/"value":[^,]+/, '"value":1e400'),
    good.replace(/"value":[^,]+/, '"value":00.5'),
    good.replace(/"value":[^,]+/, '"value":.5'),
    good.replace(/"value":[^,]+/, '"value":5.'),
    good.replace(/"value":[^,]+/, '"value":"5"'),
    good.replace(/"value":[^,]+/, '"value":NaN'),
    good.replace('"unit":"degC"', '"unit":"' + 'u'.repeat(33) + '"'),
    good.replace('"unit":"degC"', '"unit":"deg\\u00b0C"'),
    good.replace('"unit":"degC"', '"unit":"deg°C"'),
    good.replace('"metric":"temp.c"', '"metric":"1temp"'),
    good.replace('"metric":"temp.c"', '"metric":"te mp"'),
    good.replace('"metric":"temp.c"', '"metric":"temp.c","metric":"x"'),
    good.replace('"seq":1,', ''),
    good.replace('"seq":1,', '"seq":1,"extra":1,'),
    good.replace('"unit":"degC"', '"unit":"degC","score":1.5'),
    good.replace('"unit":"degC"', '"unit":"degC","score":-0.1'),
    good.replace('"unit":"degC"', '"unit":"degC","alert":1'),
    good.replace('"unit":"degC"', '"unit":"degC","model":"' + 'm'.repeat(65) + '"'),
    good.replace('"v":1', '"v":2'),
    good.replace('"v":1', '"v":1,"v":1'),
    good.replace('"epoch":3', '"epoch":-3'),
    good.replace('"device":"dev-1"', '"device":"dev-2"'),
    good.replace('"device":"dev-1"', '"device":"dev\\u002d1"'),
    good.replace('"v":1,', ''),
    good.replace('"v":1,', '"v":1,"kind":"x",'),
    good.replace(/\[.*\]/, '[]'),
    good.replace(/\]\}$/, ',]}'),
    good + 'x',
    good + '}',
    '\ufeff' + good,
    good.slice(0, -1),
    '[' + good + ']',
    '',
    '{}',
  ];
  for (const c of cases) {
    const buf = Buffer.from(c);
    const n = scanBatch(buf, DEV);
    if (n > 0) t.equal(n, full(buf), `accepted only if valid: ${c.slice(0, 120)}`);
    else t.pass(`left to the full check: ${c.slice(0, 60)}`);
  }
  t.equal(scanBatch(Buffer.from(good), 'dev-2'), 0, "another device's batch is not this connection's");
});

t.test('seeded mutations: scan-accepted means valid, with the same count', async (t) => {
  const rnd = mulberry32(4242);
  const alphabet = Buffer.from('{}[],:"\\ 0123456789.-+eE truefalsn\n\t\x00\xff"seqtsmetricvalueunitscoremodelalertvdeviceepochreadings');
  const bases = [agentBatch([r(1)]), agentBatch([r(1), r(2, { score: 0.5, model: 'm', alert: false })]), agentBatch([r(7), r(8), r(9)])];
  let accepted = 0;
  let mismatches = 0;
  for (let i = 0; i < 60_000; i++) {
    const buf = Buffer.from(bases[i % bases.length]!);
    let b = buf;
    const edits = 1 + Math.floor(rnd() * 3);
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(rnd() * b.length);
      const ch = alphabet[Math.floor(rnd() * alphabet.length)]!;
      const op = rnd();
      if (op < 0.4) b[at] = ch;
      else if (op < 0.7) b = Buffer.concat([b.subarray(0, at), Buffer.from([ch]), b.subarray(at)]);
      else b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
    }
    const n = scanBatch(b, DEV);
    if (n > 0) {
      accepted++;
      if (n !== full(b)) {
        mismatches++;
        t.fail(`scan accepted ${JSON.stringify(b.toString('latin1'))} with ${n} readings, full check says ${full(b)}`);
      }
    }
  }
  t.equal(mismatches, 0);
  t.ok(accepted > 1000, `mutations that stay valid are still taken by the scan (${accepted})`);
});
