/**
 * MQTT fuzzing against a real collector process (seeded; `EDGETWIN_FUZZ_FACTOR=10` or
 * `npm run fuzz` for the long run): thousands of mutated packets, random and mistyped payloads,
 * truncated frames, oversize publishes and slow-loris sockets, while a good device publishes
 * throughout. Every refused payload is acknowledged and counted under a known code, the collector
 * never exits, and every good reading it acknowledged reaches the cloud.
 */
import t from 'tap';
import { fuzzFactor as factor, runFuzzSuite } from '../helpers/fuzz.js';

t.test('the collector survives malformed MQTT and loses no good data', { timeout: 170_000 * factor }, async (t) => {
  const f = runFuzzSuite('mqtt', 1234);
  t.ok((f['mqtt_malformed_packets'] as number) >= 2000 * factor, `${f['mqtt_malformed_packets']} malformed packets sent`);
  t.equal(
    f['mqtt_payloads_acked'],
    f['mqtt_payloads'],
    'every publish on the device topic was acknowledged (bad ones too: no resend loop)',
  );
  t.ok((f['mqtt_payloads_invalid'] as number) > 0, 'the random payloads include invalid ones');
  t.equal(f['mqtt_bad_payload_counted'], f['mqtt_payloads_invalid'], 'each invalid payload counted as EDGETWIN_ERR_BAD_PAYLOAD');
  t.equal(f['mqtt_oversize_acked'], f['mqtt_oversize'], 'oversize publishes acknowledged');
  t.equal(f['mqtt_oversize_counted'], f['mqtt_oversize'], '… and counted as EDGETWIN_ERR_PAYLOAD_TOO_LARGE');
  t.ok((f['mqtt_connection_errors_counted'] as number) > 0, 'broken streams counted as connection errors');
  t.same(f.unknown_codes, [], 'every rejection carries a known EDGETWIN_ERR_* code');
  t.equal(f.crashes, 0, 'the collector never exited');
  t.ok(f.fresh_client_ok, 'a device connecting afterwards is served');
  // How many depends on the machine's load (41 under a load of 16): that it kept going and lost nothing is the property.
  t.ok(f.good_acked > 0, `the good device kept publishing (${f.good_acked} acknowledged)`);
  t.equal(f.good_lost, 0, 'every acknowledged good reading is stored in the cloud');
});
