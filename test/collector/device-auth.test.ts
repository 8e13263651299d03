/**
 * Device credentials at the broker: the device id in an IoT Hub-style MQTT username, and the
 * registry's password hashes (scrypt; unknown formats never verify).
 */
import t from 'tap';
import { deviceFromUsername } from '../../collector/broker/auth.js';
import { hashPassword, verifyPassword } from '../../collector/registry/device-registry.js';

t.test('usernames and password hashes', async (t) => {
  t.equal(deviceFromUsername('myhub.azure-devices.net/pump-7/?api-version=2021-04-12&DeviceClientType=x'), 'pump-7');
  t.equal(deviceFromUsername('pump-7'), 'pump-7');
  t.equal(deviceFromUsername(undefined), undefined);
  t.equal(deviceFromUsername('host//'), undefined);
  const h = await hashPassword('correct horse');
  t.match(h, /^scrypt\$16384\$8\$1\$/);
  t.ok(await verifyPassword('correct horse', h));
  t.notOk(await verifyPassword('wrong horse', h));
  t.notOk(await verifyPassword('x', 'md5$abc'), 'unknown hash formats never verify');
});
