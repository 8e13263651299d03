import t from 'tap';
import { ErrorCodes, isEdgetwinError } from '../../common/errors.js';
import { checkEnvelope, spliceEnvelope } from '../../common/wire/ingest-envelope.js';
import { decodeBatch, encodeBatch, encodeReading, spliceBatch, topics, type TelemetryBatch } from '../../common/wire/record.js';

const batch: TelemetryBatch = {
  v: 1,
  device: 'pump-7',
  epoch: 3,
  readings: [
    { seq: 10, ts: 1_700_000_000_000, metric: 'temperature', value: 21.5, unit: 'degC' },
    { seq: 11, ts: 1_700_000_001_000, metric: 'vibration_rms', value: 2.25, unit: 'mm/s', score: 0.9, model: 'iforest-1.0.0', alert: true },
  ],
};

t.test('a batch survives encode and decode unchanged', async (t) => {
  t.same(decodeBatch(encodeBatch(batch)), batch);
  t.same(decodeBatch(Buffer.from(encodeBatch(batch))), batch);
});

t.test('spliceBatch builds the same bytes as encodeBatch from pre-encoded readings', async (t) => {
  const spliced = spliceBatch(batch.device, batch.epoch, batch.readings.map(encodeReading));
  t.equal(spliced, encodeBatch(batch));
});

t.test('invalid payloads are refused with EDGETWIN_ERR_BAD_PAYLOAD and say where', async (t) => {
  const cases: [string, unknown, RegExp][] = [
    ['not json', '{nope', /not valid JSON/],
    ['wrong version', { ...batch, v: 2 }, /\/v/],
    ['missing epoch', { v: 1, device: 'd', readings: batch.readings }, /epoch/],
    ['no readings', { ...batch, readings: [] }, /readings/],
    ['string value', { ...batch, readings: [{ ...batch.readings[0], value: '21' }] }, /readings\/0\/value/],
    ['negative seq', { ...batch, readings: [{ ...batch.readings[0], seq: -1 }] }, /seq/],
    ['score above 1', { ...batch, readings: [{ ...batch.readings[0], score: 1.5 }] }, /score/],
    ['unknown field', { ...batch, readings: [{ ...batch.readings[0], extra: 1 }] }, /readings\/0/],
    ['bad device id', { ...batch, device: 'a/b' }, /device/],
  ];
  for (const [name, input, where] of cases) {
    try {
      decodeBatch(typeof input === 'string' ? input : JSON.stringify(input));
      t.fail(`${name}: accepted`);
    } catch (err) {
      t.ok(isEdgetwinError(err, ErrorCodes.BAD_PAYLOAD), `${name}: code`);
      t.match((err as Error).message, where, `${name}: message names the place`);
    }
  }
});

t.test('topics follow the IoT Hub scheme and give back the device', async (t) => {
  t.equal(topics.telemetry('pump-7'), 'devices/pump-7/messages/events/');
  t.equal(topics.deviceOf('devices/pump-7/messages/events/a=b'), 'pump-7');
  t.equal(topics.deviceOf('other/pump-7'), undefined);
});

t.test('ingest envelope: splice and check agree; bad envelopes are BAD_REQUEST', async (t) => {
  const text = spliceEnvelope('b-1', 'site-a', [encodeBatch(batch)]);
  const env = checkEnvelope(JSON.parse(text));
  t.equal(env.batchId, 'b-1');
  t.same(env.messages[0], batch);
  t.throws(() => checkEnvelope({ v: 1, site: 'x', messages: [] }), { code: ErrorCodes.BAD_REQUEST });
  t.throws(() => checkEnvelope({ v: 1, batchId: 'b', site: 'bad site!', messages: [] }), { code: ErrorCodes.BAD_REQUEST });
});
