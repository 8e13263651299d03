/** Credentials inside strings never reach a log line: URL userinfo, SAS signatures, keys and tokens in queries. */
import { Writable } from 'node:stream';
import t from 'tap';
import { createLogger } from '../../common/log.js';
import { hasCredential, redactDeep, redactText, redactUrl } from '../../common/redact.js';

t.test('redactUrl and redactText', async (t) => {
  t.equal(redactUrl('mqtt://pump-7:hunter2@10.0.0.5:1883'), 'mqtt://[redacted]@10.0.0.5:1883');
  t.equal(redactUrl('mqtts://10.0.0.5:8883'), 'mqtts://10.0.0.5:8883', 'nothing to hide: unchanged');
  t.equal(
    redactUrl('https://a.blob.core.windows.net/c?sv=1&sig=abc%2Fdef&se=2'),
    'https://a.blob.core.windows.net/c?sv=1&sig=[redacted]&se=2',
  );
  t.equal(
    redactText('Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=c2VjcmV0;EntityPath=h'),
    'Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=[redacted];EntityPath=h',
  );
  t.equal(redactText('GET /v1/stream?access_token=etk_abc&site=a'), 'GET /v1/stream?access_token=[redacted]&site=a');
  const obj = { cfg: { url: 'mqtt://u:p@h:1', n: 1 }, list: ['x', 'ws://a:b@c'] };
  const out = redactDeep(obj) as typeof obj;
  t.same(out, { cfg: { url: 'mqtt://[redacted]@h:1', n: 1 }, list: ['x', 'ws://[redacted]@c'] });
  t.equal(obj.cfg.url, 'mqtt://u:p@h:1', 'the logged object itself is not changed');
  t.notOk(hasCredential('postgres://postgres@127.0.0.1:5432/edgetwin'), 'a user name alone is no credential');
  t.ok(hasCredential('postgres://edgetwin:pw@127.0.0.1/db'));
  t.ok(hasCredential('https://a.blob.core.windows.net/c?sv=1&sig=abc'));
  const same = { a: 1, b: 'plain' };
  t.equal(redactDeep(same), same, 'nothing to hide: the same object, no copy');
});

t.test('every logger scrubs fields, messages and errors', async (t) => {
  let out = '';
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      out += chunk.toString();
      cb();
    },
  });
  const log = createLogger('test', { level: 'info' }, sink);
  log.info({ url: 'mqtt://dev:s3cret-pw@10.0.0.1:1883' }, 'connected');
  log.warn('failed to reach https://user:s3cret-pw@example.test/x');
  log.error({ err: new Error('connect to amqps://key:s3cret-pw@hub failed') }, 'event hubs');
  log.info({ nested: { deeper: { conn: 'sig=s3cret-pw' } } }, 'nested');
  t.notMatch(out, /s3cret-pw/, 'the password appears nowhere');
  t.match(out, /mqtt:\/\/\[redacted\]@10\.0\.0\.1:1883/);
  t.match(out, /https:\/\/\[redacted\]@example\.test/);
  t.match(out, /amqps:\/\/\[redacted\]@hub/);
});
