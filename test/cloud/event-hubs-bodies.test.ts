/**
 * Event Hubs bodies the cloud cannot read (not UTF-8, not JSON) are never dropped or altered: they
 * become quarantine messages with the bytes as received and the reason (issue 13), like payloads a
 * collector refuses. The pipeline then keeps them in the quarantine table.
 */
import t from 'tap';
import { envelopesFromEvents } from '../../cloud/ingest/event-hubs-consumer.js';
import { checkMessage } from '../../common/wire/record.js';

t.test('unreadable event bodies become quarantine messages with their bytes', async (t) => {
  const bad = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]);
  const [env] = envelopesFromEvents('0', [
    {
      body: Buffer.from('{"v":1,"device":"d1","epoch":1,"readings":[{"seq":1,"ts":1750000000000,"metric":"t","value":1,"unit":"C"}]}'),
      sequenceNumber: 1,
      partitionKey: 'd1',
      properties: { 'edgetwin-site': 's1' },
    },
    { body: bad, sequenceNumber: 2, partitionKey: 'd1', properties: { 'edgetwin-site': 's1' } },
    { body: Buffer.from('temperature=21.5'), sequenceNumber: 3, partitionKey: 'd2', properties: { 'edgetwin-site': 's1' } },
  ]);
  t.equal(env!.events.length, 3);
  const msgs = env!.body.messages.map((m) => checkMessage(m));
  t.same(
    msgs.map((m) => m.kind),
    ['telemetry', 'quarantine', 'quarantine'],
  );
  const q1 = msgs[1]!.kind === 'quarantine' ? msgs[1]!.quarantine : undefined;
  const q2 = msgs[2]!.kind === 'quarantine' ? msgs[2]!.quarantine : undefined;
  t.match(q1, { device: 'd1', code: 'EDGETWIN_ERR_BAD_PAYLOAD', reason: /not valid UTF-8/ });
  t.same(Buffer.from(q1!.payload, 'base64'), bad, 'bytes as received, not replaced by U+FFFD');
  t.match(q2, { device: 'd2', reason: /not valid JSON/ });
  t.equal(Buffer.from(q2!.payload, 'base64').toString(), 'temperature=21.5');
  t.same(JSON.parse(env!.raw.toString()), env!.body, 'the landed text is the parsed body');
});
