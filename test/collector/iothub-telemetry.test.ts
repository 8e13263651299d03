/**
 * IoT Hub SDK message bodies (collector/broker/iothub-telemetry.ts): which map to readings, which are
 * refused with EDGETWIN_ERR_BAD_PAYLOAD.
 */
import t from 'tap';
import { NO_UNIT, parseDeviceMessage } from '../../collector/broker/iothub-telemetry.js';
import { ErrorCodes } from '../../common/errors.js';
import { batch } from '../helpers/collector.js';

const noBag = (): URLSearchParams => new URLSearchParams();

t.test('SDK message bodies map to readings or are refused', async (t) => {
  const now = 1_800_000_000_000;
  const m = parseDeviceMessage(
    'd1',
    Buffer.from('{"temperature":21.5,"pressure":{"value":101.3,"unit":"kPa"},"status":"ok","bad metric":1,"n":{"value":"x"}}'),
    noBag,
    now,
  );
  t.same(m, {
    kind: 'metrics',
    readings: [
      { ts: now, metric: 'temperature', value: 21.5, unit: NO_UNIT },
      { ts: now, metric: 'pressure', value: 101.3, unit: 'kPa' },
    ],
    skipped: 3,
    skippedNames: ['status', 'bad metric', 'n'],
  });
  t.equal(
    (parseDeviceMessage('d1', Buffer.from('{"ts":"2026-01-01T00:00:00Z","x":1}'), noBag, now) as { readings: { ts: number }[] })
      .readings[0]!.ts,
    Date.parse('2026-01-01T00:00:00Z'),
    'body ts (ISO) wins',
  );
  t.equal(
    (
      parseDeviceMessage(
        'd1',
        Buffer.from('{"x":1}'),
        () => new URLSearchParams('$.ct=application%2Fjson&$.ctime=2026-02-02T00%3A00%3A00.000Z'),
        now,
      ) as { readings: { ts: number }[] }
    ).readings[0]!.ts,
    Date.parse('2026-02-02T00:00:00Z'),
    "IoT Hub's $.ctime property is the sample time when the body has none",
  );
  t.same(
    parseDeviceMessage('d1', Buffer.from(batch('d1', 3, 7, 2)), noBag, now),
    { kind: 'batch', readings: 2 },
    'an edgetwin batch passes as is',
  );
  for (const [body, why] of [
    ['not json', /not valid JSON/],
    ['[1,2]', /JSON object/],
    ['{"status":"ok"}', /no numeric metric/],
    [batch('other', 1, 1), /names device other/],
    ['{"v":1,"device":"d1","epoch":1,"readings":[]}', /readings/],
  ] as const) {
    t.throws(() => parseDeviceMessage('d1', Buffer.from(body), noBag, now), { code: ErrorCodes.BAD_PAYLOAD, message: why });
  }
});
