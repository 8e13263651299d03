/**
 * Modbus TCP polling against modbus-serial's own ServerTCP on loopback: holding and input
 * registers, int16/uint16/int32/uint32/float32 in all four byte orders, scale and offset, per-
 * register intervals, a Modbus exception on one register, and the server going away and coming
 * back (the source fails, shows in /healthz, is restarted with backoff; the simulator never stops).
 */
import modbusSerial from 'modbus-serial';
import t from 'tap';
import { request } from 'undici';
import { decodeRegisters } from '../../agent/sources/modbus-tcp.js';
import { freePort } from '../helpers/cli.js';
import { TestBroker, startAgent, tempDir, waitFor } from '../helpers/stack.js';

// float32 π is 0x40490FDB; each pair below is that value in one of the four byte orders.
const holding = new Map<number, number>([
  [0, 0xfb2e], // int16 -1234
  [1, 54321], // uint16
  [10, 0x4049],
  [11, 0x0fdb], // ABCD
  [20, 0x0fdb],
  [21, 0x4049], // CDAB
  [30, 0x4940],
  [31, 0xdb0f], // BADC
  [40, 0xdb0f],
  [41, 0x4940], // DCBA
  [50, 0xfffe],
  [51, 0x7960], // int32 -100000, ABCD
  [60, 0x5e00],
  [61, 0xb2d0], // uint32 3000000000, CDAB
]);
const input = new Map<number, number>([[5, 77]]);

function startServer(port: number): Promise<InstanceType<typeof modbusSerial.ServerTCP>> {
  const illegal = (): never => {
    throw Object.assign(new Error('illegal address'), { modbusErrorCode: 2 });
  };
  const server = new modbusSerial.ServerTCP(
    {
      getHoldingRegister: (addr: number) => holding.get(addr) ?? illegal(),
      getInputRegister: (addr: number) => input.get(addr) ?? illegal(),
    },
    { host: '127.0.0.1', port, unitID: 1 },
  );
  return new Promise((resolve, reject) => {
    server.on('initialized', () => resolve(server));
    server.on('serverError', reject);
  });
}

function stopServer(s: InstanceType<typeof modbusSerial.ServerTCP>): Promise<void> {
  return new Promise((resolve) => s.close(() => resolve()));
}

const PI32 = Buffer.from([0x40, 0x49, 0x0f, 0xdb]).readFloatBE(0);

const registers = [
  { metric: 'temp_raw', unit: 'degC', address: 0, type: 'int16', scale: 0.1, offset: 5 },
  { metric: 'count', unit: '1', address: 1, type: 'uint16' },
  { metric: 'pi_abcd', unit: '1', address: 10, type: 'float32', wordOrder: 'ABCD' },
  { metric: 'pi_cdab', unit: '1', address: 20, type: 'float32', wordOrder: 'CDAB' },
  { metric: 'pi_badc', unit: '1', address: 30, type: 'float32', wordOrder: 'BADC' },
  { metric: 'pi_dcba', unit: '1', address: 40, type: 'float32', wordOrder: 'DCBA' },
  { metric: 'i32', unit: '1', address: 50, type: 'int32' },
  { metric: 'u32', unit: '1', address: 60, type: 'uint32', wordOrder: 'CDAB' },
  { metric: 'level', unit: 'm', address: 5, table: 'input', type: 'uint16', scale: 0.5, pollIntervalMs: 40 },
  { metric: 'missing', unit: '1', address: 999 },
];

t.test('byte orders decode the same float', async (t) => {
  for (const [order, bytes] of [
    ['ABCD', [0x40, 0x49, 0x0f, 0xdb]],
    ['CDAB', [0x0f, 0xdb, 0x40, 0x49]],
    ['BADC', [0x49, 0x40, 0xdb, 0x0f]],
    ['DCBA', [0xdb, 0x0f, 0x49, 0x40]],
  ] as const) {
    t.equal(decodeRegisters(Buffer.from(bytes), 'float32', order), PI32, order);
  }
});

t.test('registers are polled, decoded, scaled and shipped; a failing server is retried and never stops the simulator', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const port = await freePort();
  let server = await startServer(port);
  const broker = new TestBroker();
  await broker.start();
  const agent = await startAgent(`${dir}/agent`, 'plc-1', broker.port, undefined, {
    twin: { enabled: false },
    admin: { enabled: true, port: 0 },
    sources: {
      backoff: { initialMs: 100, maxMs: 300 },
      simulator: { intervalMs: 50 },
      modbusTcp: { enabled: true, port, unitId: 1, pollIntervalMs: 200, timeoutMs: 500, registers },
    },
  });
  t.teardown(async () => {
    await agent.stop(200);
    await broker.stop();
  });
  const latest = (metric: string): number | undefined =>
    broker
      .readings('plc-1')
      .filter((r) => r.metric === metric)
      .at(-1)?.value;
  await waitFor(
    () => latest('u32') !== undefined && broker.readings('plc-1').filter((r) => r.metric === 'level').length >= 10,
    10_000,
    'polled values',
  );
  t.equal(latest('temp_raw'), -1234 * 0.1 + 5, 'int16 with scale and offset');
  t.equal(latest('count'), 54321, 'uint16');
  for (const m of ['pi_abcd', 'pi_cdab', 'pi_badc', 'pi_dcba']) t.equal(latest(m), PI32, `${m}: float32`);
  t.equal(latest('i32'), -100000, 'int32');
  t.equal(latest('u32'), 3_000_000_000, 'uint32, word-swapped');
  t.equal(latest('level'), 38.5, 'input register');
  const count = (m: string): number => broker.readings('plc-1').filter((r) => r.metric === m).length;
  t.ok(
    count('level') > 2 * count('count'),
    `per-register interval: level (40 ms) polled ${count('level')}×, count (200 ms) ${count('count')}×`,
  );
  t.equal(latest('missing'), undefined, 'the register the server refuses yields nothing');
  const metrics = await agent.registry.metrics();
  t.match(
    metrics,
    /edgetwin_agent_rejected_total\{source="modbus-tcp",code="EDGETWIN_ERR_BAD_READING"[^}]*\} [1-9]/,
    'the Modbus exception is counted',
  );

  const healthz = async (): Promise<{
    status: number;
    body: { ok: boolean; sources: Record<string, { state: string; failures: number; lastError?: string }> };
  }> => {
    const res = await request(`http://127.0.0.1:${agent.adminPort}/healthz`);
    return { status: res.statusCode, body: (await res.body.json()) as never };
  };
  t.equal((await healthz()).status, 200, 'healthy while the server answers');

  await stopServer(server);
  await waitFor(async () => (await healthz()).status === 503, 5000, '/healthz to report the failure');
  const h = await healthz();
  t.equal(h.body.sources['modbus-tcp']?.state, 'backoff', 'the source waits for its retry');
  t.ok(h.body.sources['modbus-tcp']!.failures >= 1);
  t.match(h.body.sources['modbus-tcp']?.lastError, /modbus 127\.0\.0\.1:\d+/);
  t.equal(h.body.sources['simulator']?.state, 'running', 'the simulator is unaffected');
  const simBefore = count('temperature');
  await waitFor(() => count('temperature') > simBefore, 10_000, 'simulator readings while Modbus is down');
  t.ok(count('temperature') > simBefore, 'simulator readings keep flowing while Modbus is down');

  server = await startServer(port);
  t.teardown(() => stopServer(server));
  const levelBefore = count('level');
  await waitFor(async () => count('level') > levelBefore + 3 && (await healthz()).status === 200, 10_000, 'Modbus back after a retry');
  t.equal((await healthz()).body.sources['modbus-tcp']?.state, 'running');
  t.match(await agent.registry.metrics(), /edgetwin_agent_source_errors_total\{source="modbus-tcp"[^}]*\} [1-9]/);
});
