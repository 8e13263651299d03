/**
 * Sockets that connect and never send CONNECT (slow loris): the listeners close them after
 * mqtt.connectTimeoutMs, cap how many may be pending at once (the oldest make room), count both,
 * and a real MQTT client still connects while the silent sockets are open. The listeners run over
 * a real aedes broker here; the collector test checks the config reaches them.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import t, { type Test } from 'tap';
import { collectorDefaults, loadCollectorConfig } from '../../collector/config.js';
import { MqttListeners } from '../../collector/broker/listeners.js';
import { createRegistry } from '../../common/metrics.js';
import { ErrorCodes } from '../../common/errors.js';
import { metric } from '../helpers/collector.js';
import { silent, startCollector, tempDir, waitFor } from '../helpers/stack.js';

async function silentSockets(port: number, n: number): Promise<{ sockets: Socket[]; closed: () => number }> {
  let closed = 0;
  const sockets = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Socket>((resolve, reject) => {
          const s = netConnect(port, '127.0.0.1', () => resolve(s));
          s.once('error', reject);
          s.once('close', () => closed++);
        }),
    ),
  );
  for (const s of sockets) s.on('error', () => undefined);
  return { sockets, closed: () => closed };
}

async function listenersOn(t: Test, mqttCfg: { connectTimeoutMs: number; maxPendingConnections: number }) {
  const aedes = await Aedes.createBroker();
  const registry = createRegistry('collector');
  const listeners = new MqttListeners(
    { ...collectorDefaults.mqtt, port: 0, ...mqttCfg },
    (stream, req) => aedes.handle(stream, req),
    silent(),
    () => undefined,
    registry,
  );
  const { mqtt: port } = await listeners.start();
  t.teardown(async () => {
    await listeners.stop();
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
  });
  return { listeners, registry, port: port! };
}

function connectClient(port: number, id: string): Promise<mqtt.MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId: id, reconnectPeriod: 0, connectTimeout: 10_000 });
    c.once('connect', () => resolve(c));
    c.once('error', reject);
    c.once('close', () => reject(new Error(`${id} closed before CONNACK`)));
  });
}

t.test('silent sockets are closed after connectTimeoutMs and counted; a device that connected stays', async (t) => {
  const { listeners, registry, port } = await listenersOn(t, { connectTimeoutMs: 300, maxPendingConnections: 1000 });
  const device = await connectClient(port, 'dev-1');
  t.teardown(() => device.end(true));
  const slow = await silentSockets(port, 20);
  t.teardown(() => slow.sockets.forEach((s) => s.destroy()));
  await waitFor(() => slow.closed() === 20, 20_000, 'every silent socket to be closed');
  t.equal(listeners.closedPending.connect_timeout, 20, 'each is counted');
  t.equal(await metric(registry, 'edgetwin_collector_mqtt_slow_connections_total', { reason: 'connect_timeout' }), 20, 'in the metric');
  t.equal(listeners.pendingConnections, 0, 'nothing is pending any more');
  t.ok(device.connected, 'the device that completed CONNECT is not touched by the deadline');
  await new Promise<void>((resolve, reject) => device.publish('x/y', 'hi', { qos: 1 }, (err) => (err ? reject(err) : resolve())));
  t.pass('and still publishes');
});

t.test('pending connections are capped: the oldest make room, and a real client still connects', async (t) => {
  const { listeners, registry, port } = await listenersOn(t, { connectTimeoutMs: 600_000, maxPendingConnections: 10 });
  const slow = await silentSockets(port, 40);
  t.teardown(() => slow.sockets.forEach((s) => s.destroy()));
  await waitFor(() => slow.closed() === 30, 20_000, 'the 30 oldest silent sockets to be closed');
  t.equal(listeners.pendingConnections, 10, 'at most maxPendingConnections stay pending');
  t.equal(await metric(registry, 'edgetwin_collector_mqtt_slow_connections_total', { reason: 'max_pending' }), 30, 'evictions are counted');
  t.equal(slow.sockets.filter((s) => !s.destroyed).length, 10, 'the rest stay open');

  const device = await connectClient(port, 'dev-2');
  t.teardown(() => device.end(true));
  t.ok(device.connected, 'a real client connects while the pending set is full');
  await new Promise<void>((resolve, reject) => device.publish('x/y', 'hi', { qos: 1 }, (err) => (err ? reject(err) : resolve())));
  t.pass('and publishes');
});

t.test('the collector closes silent sockets after mqtt.connectTimeoutMs', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const c = await startCollector(`${dir}/c`, 'http://127.0.0.1:9', 0, {
    mqtt: { connectTimeoutMs: 300, maxPendingConnections: 50 },
    sinks: { http: { enabled: false } },
  });
  t.teardown(() => c.stop());
  const slow = await silentSockets(c.mqttPort, 5);
  t.teardown(() => slow.sockets.forEach((s) => s.destroy()));
  await waitFor(() => slow.closed() === 5, 20_000, 'the collector to close the silent sockets');
  t.pass("closed well before aedes' own 30 s");
  t.equal(
    await metric(c.registry, 'edgetwin_collector_mqtt_slow_connections_total', { reason: 'connect_timeout' }),
    5,
    "counted in the collector's metrics",
  );
});

t.test('config: connectTimeoutMs and maxPendingConnections are validated by key', async (t) => {
  t.throws(() => loadCollectorConfig(undefined, { mqtt: { connectTimeoutMs: 5 } }, {}), {
    code: ErrorCodes.CONFIG,
    message: /mqtt\/connectTimeoutMs|mqtt\.connectTimeoutMs/,
  });
  t.throws(() => loadCollectorConfig(undefined, { mqtt: { maxPendingConnections: 0 } }, {}), {
    code: ErrorCodes.CONFIG,
    message: /mqtt\/maxPendingConnections|mqtt\.maxPendingConnections/,
  });
  const cfg = loadCollectorConfig(undefined, {}, {});
  t.equal(cfg.mqtt.connectTimeoutMs, 10_000);
  t.equal(cfg.mqtt.maxPendingConnections, 1000);
});
