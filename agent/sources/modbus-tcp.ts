/**
 * Modbus TCP polling (modbus-serial): holding or input registers, each decoded as int16, uint16,
 * int32, uint32 or float32 (32-bit values in any of the four byte orders devices use), scaled
 * (`value = raw × scale + offset`) and polled at its own interval. A lost connection or a timeout
 * fails the source (the agent reconnects with backoff); a Modbus exception for one register (e.g.
 * an illegal address) is counted as a rejected reading and the others carry on.
 */
import type ModbusSerial from 'modbus-serial';
import Type, { type Static } from 'typebox';
import { configDefaults, Section } from '../../common/config.js';
import { EdgetwinError, ErrorCodes, errorMessage } from '../../common/errors.js';
import { METRIC_PATTERN } from '../../common/wire/record.js';
import type { Source, SourceContext, SourceReading } from '../types.js';

const REGISTER_TYPES = ['int16', 'uint16', 'int32', 'uint32', 'float32'] as const;
/** Order of the four bytes of a 32-bit value as they arrive in two registers: ABCD is big-endian, high word first. */
const WORD_ORDERS = ['ABCD', 'CDAB', 'BADC', 'DCBA'] as const;
export type RegisterType = (typeof REGISTER_TYPES)[number];
export type WordOrder = (typeof WORD_ORDERS)[number];

const registerSchema = Section({
  metric: Type.String({ pattern: METRIC_PATTERN }),
  unit: Type.String({ maxLength: 32 }),
  table: Type.Optional(Type.Enum(['holding', 'input'], { default: 'holding' })),
  /** Zero-based register address. */
  address: Type.Integer({ minimum: 0, maximum: 65535 }),
  type: Type.Optional(Type.Enum(REGISTER_TYPES, { default: 'uint16' })),
  wordOrder: Type.Optional(Type.Enum(WORD_ORDERS, { default: 'ABCD' })),
  scale: Type.Optional(Type.Number({ default: 1 })),
  offset: Type.Optional(Type.Number({ default: 0 })),
  /** Defaults to the source's pollIntervalMs. */
  pollIntervalMs: Type.Optional(Type.Integer({ minimum: 10 })),
});
/** A register as configured; the defaults of the optional keys are applied when the source is built. */
export type ModbusRegisterConfig = Static<typeof registerSchema>;
export type ModbusRegister = Required<Omit<ModbusRegisterConfig, 'pollIntervalMs'>> & Pick<ModbusRegisterConfig, 'pollIntervalMs'>;

export const modbusTcpConfigSchema = Section(
  {
    enabled: Type.Boolean({ default: false }),
    host: Type.String({ minLength: 1, default: '127.0.0.1' }),
    port: Type.Integer({ minimum: 1, maximum: 65535, default: 502 }),
    unitId: Type.Integer({ minimum: 0, maximum: 255, default: 1 }),
    timeoutMs: Type.Integer({ minimum: 10, default: 2000 }),
    pollIntervalMs: Type.Integer({ minimum: 10, default: 1000 }),
    registers: Type.Array(registerSchema, { default: [] }),
  },
  {
    if: { properties: { enabled: { const: true } }, required: ['enabled'] },
    then: { properties: { registers: { minItems: 1 } } },
  },
);
export type ModbusTcpConfig = Static<typeof modbusTcpConfigSchema>;
export const modbusTcpDefaults: ModbusTcpConfig = configDefaults(modbusTcpConfigSchema);

const registerDefaults = configDefaults(registerSchema);

export function registerCount(type: RegisterType): number {
  return type === 'int16' || type === 'uint16' ? 1 : 2;
}

/** Decodes the raw register bytes (big-endian per register, as on the wire). */
export function decodeRegisters(buf: Buffer, type: RegisterType, order: WordOrder): number {
  if (type === 'int16') return buf.readInt16BE(0);
  if (type === 'uint16') return buf.readUInt16BE(0);
  const [a, b, c, d] = [buf[0]!, buf[1]!, buf[2]!, buf[3]!];
  const bytes = order === 'ABCD' ? [a, b, c, d] : order === 'CDAB' ? [c, d, a, b] : order === 'BADC' ? [b, a, d, c] : [d, c, b, a];
  const be = Buffer.from(bytes);
  if (type === 'int32') return be.readInt32BE(0);
  if (type === 'uint32') return be.readUInt32BE(0);
  return be.readFloatBE(0);
}

type ModbusRTU = InstanceType<typeof ModbusSerial.default>;

/**
 * modbus-serial (with serialport's native bindings) costs ~15 MB of RSS: loaded only by an agent
 * that polls Modbus. It is CommonJS; its class is the module's `default` (also module.exports).
 */
async function modbusClient(): Promise<ModbusRTU> {
  const mod = (await import('modbus-serial')) as unknown as { default: typeof ModbusSerial };
  return new mod.default.default();
}

interface ModbusError extends Error {
  modbusCode?: number;
}

export class ModbusTcpSource implements Source {
  readonly name = 'modbus-tcp';
  private client: ModbusRTU | undefined;
  private timers: NodeJS.Timeout[] = [];
  private chain: Promise<unknown> = Promise.resolve();
  private readonly registers: ModbusRegister[];

  constructor(private readonly cfg: ModbusTcpConfig) {
    this.registers = cfg.registers.map((r) => ({ ...registerDefaults, ...r }) as ModbusRegister);
  }

  async start(ctx: SourceContext): Promise<void> {
    const client = await modbusClient();
    this.client = client;
    // A request of a previous connection may never settle: each connection queues on its own.
    this.chain = Promise.resolve();
    client.setTimeout(this.cfg.timeoutMs);
    // A host that drops SYNs would otherwise hold the start for the OS connect timeout (minutes).
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new EdgetwinError(ErrorCodes.SOURCE, `modbus ${this.cfg.host}:${this.cfg.port}: no connection after ${this.cfg.timeoutMs} ms`),
          ),
        this.cfg.timeoutMs,
      );
    });
    try {
      await Promise.race([client.connectTCP(this.cfg.host, { port: this.cfg.port }), timeout]);
    } finally {
      clearTimeout(timer);
    }
    client.setID(this.cfg.unitId);
    ctx.log.info({ host: this.cfg.host, port: this.cfg.port, registers: this.registers.length }, 'modbus connected');
    client.on('close', () => {
      if (!ctx.signal.aborted)
        ctx.fail(new EdgetwinError(ErrorCodes.SOURCE, `modbus ${this.cfg.host}:${this.cfg.port}: connection closed`));
    });
    const groups = new Map<number, ModbusRegister[]>();
    for (const r of this.registers) {
      const every = r.pollIntervalMs ?? this.cfg.pollIntervalMs;
      groups.set(every, [...(groups.get(every) ?? []), r]);
    }
    for (const [every, regs] of groups) {
      let busy = false;
      const tick = (): void => {
        // A poll slower than its interval skips ticks rather than queueing them up.
        if (busy || ctx.signal.aborted) return;
        busy = true;
        void this.poll(ctx, client, regs).finally(() => (busy = false));
      };
      tick();
      this.timers.push(setInterval(tick, every));
    }
  }

  private async poll(ctx: SourceContext, client: ModbusRTU, regs: ModbusRegister[]): Promise<void> {
    const out: SourceReading[] = [];
    for (const r of regs) {
      const n = registerCount(r.type);
      // One request at a time on the connection.
      const read = this.chain
        .catch(() => undefined)
        .then(() => (r.table === 'input' ? client.readInputRegisters(r.address, n) : client.readHoldingRegisters(r.address, n)));
      this.chain = read;
      try {
        const res = (await read) as { buffer: Buffer };
        const raw = decodeRegisters(res.buffer, r.type, r.wordOrder);
        out.push({ ts: Date.now(), metric: r.metric, value: raw * r.scale + r.offset, unit: r.unit });
      } catch (err) {
        if (ctx.signal.aborted) return;
        const code = (err as ModbusError).modbusCode;
        if (code !== undefined) {
          ctx.reject(
            new EdgetwinError(
              ErrorCodes.BAD_READING,
              `modbus ${r.table} register ${r.address} (${r.metric}): exception ${code}: ${errorMessage(err)}`,
              { details: { address: r.address, modbusCode: code } },
            ),
          );
          continue;
        }
        ctx.fail(new EdgetwinError(ErrorCodes.SOURCE, `modbus ${this.cfg.host}:${this.cfg.port}: ${errorMessage(err)}`, { cause: err }));
        return;
      }
    }
    if (out.length > 0) ctx.emit(out);
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    const client = this.client;
    this.client = undefined;
    if (client?.isOpen) await new Promise<void>((resolve) => client.close(() => resolve()));
    else client?.destroy?.(() => undefined);
  }
}
