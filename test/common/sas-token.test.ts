import { createHmac, randomBytes } from 'node:crypto';
import t from 'tap';
import { ErrorCodes } from '../../common/errors.js';
import { createSasToken, parseSasToken, verifySasToken } from '../../common/sas-token.js';

const key = randomBytes(32).toString('base64');
const uri = 'hub.example.net/devices/pump-7';

t.test('a token made for a device verifies for that device until it expires', async (t) => {
  const now = 1_800_000_000;
  const token = createSasToken(uri, key, now + 60);
  t.equal(verifySasToken(token, 'pump-7', key, now).se, now + 60);
  t.throws(() => verifySasToken(token, 'pump-7', key, now + 61), { code: ErrorCodes.UNAUTHORIZED, message: /expired/ });
  t.throws(() => verifySasToken(token, 'pump-8', key, now), { message: /another resource/ });
  t.throws(() => verifySasToken(token, 'pump-7', randomBytes(32).toString('base64'), now), { message: /signature/ });
});

t.test("the signature is IoT Hub's: HMAC-SHA256 over the encoded URI and expiry", async (t) => {
  const se = 1_900_000_000;
  const expected = createHmac('sha256', Buffer.from(key, 'base64'))
    .update(`${encodeURIComponent(uri)}\n${se}`)
    .digest('base64');
  t.equal(parseSasToken(createSasToken(uri, key, se)).sig, expected);
});

t.test('malformed tokens are refused', async (t) => {
  t.throws(() => parseSasToken('Bearer abc'), { code: ErrorCodes.UNAUTHORIZED });
  t.throws(() => parseSasToken('SharedAccessSignature sr=x&se=1'), { message: /lacks/ });
});
