/**
 * The agent's built-in direct methods — what an operator reaches for when a device misbehaves:
 * `ping`, `flush` (commit what is in memory and send the outbox now), `restartSource` `{name}`,
 * `getDiagnostics` (outbox, sources, model, uplink) and `setLogLevel` `{level}`. Bad arguments
 * answer 400, an unknown source 404 (with the known ones): each with a stable EDGETWIN_ERR_* code.
 */
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { EDGETWIN_VERSION } from '../../common/version.js';
import type { SourceStatus } from '../sources/supervisor.js';
import type { DeviceMethods } from './device-methods.js';

/** What the built-ins need from the agent (the Agent class provides it). */
export interface MethodHost {
  readonly cfg: { deviceId: string; uplink: { url: string } };
  readonly log: Logger;
  readonly identity: { epoch: number; nextSeq: number };
  readonly outbox: { depth(): { rows: number; bytes: number }; lastId(): number; oldestId(): number | undefined };
  readonly uplink: { connected: boolean; inflightBatches: number; drainingBacklog: boolean; sendNow(ms: number): void };
  readonly twin?: { state: { version: number } } | undefined;
  health(): { ok: boolean; sources: Record<string, SourceStatus>; sourceErrors: Record<string, string> };
  /** Commits the readings waiting in memory; resolves to how many. */
  flush(): Promise<number>;
  restartSource(name: string): Promise<SourceStatus>;
  readonly modelVersion: string | undefined;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const FLUSH_WAIT_MAX_MS = 60_000;
const startedAt = Date.now();

function badRequest(msg: string): EdgetwinError {
  return new EdgetwinError(ErrorCodes.BAD_REQUEST, msg);
}

function field(payload: unknown, key: string): unknown {
  return typeof payload === 'object' && payload !== null && !Array.isArray(payload) ? (payload as Record<string, unknown>)[key] : undefined;
}

export function registerBuiltIns(methods: DeviceMethods, host: MethodHost, now: () => number = Date.now): void {
  methods.register('ping', () => ({
    pong: true,
    deviceId: host.cfg.deviceId,
    epoch: host.identity.epoch,
    ts: now(),
    version: EDGETWIN_VERSION,
  }));

  methods.register('flush', async (payload) => {
    const waitMs = field(payload, 'waitMs') ?? 5000;
    if (typeof waitMs !== 'number' || !Number.isInteger(waitMs) || waitMs < 0 || waitMs > FLUSH_WAIT_MAX_MS)
      throw badRequest(`waitMs must be an integer from 0 to ${FLUSH_WAIT_MAX_MS}`);
    const committed = await host.flush();
    // Drained means everything waiting when the call came has been acknowledged: a live source keeps
    // adding rows, so "the outbox is empty" may never hold (and did not, under load, in methods.test.ts).
    const upTo = host.outbox.lastId();
    const waiting = (): boolean => (host.outbox.oldestId() ?? Infinity) <= upTo;
    // Partly filled batches go out now instead of after batchMaxDelayMs.
    host.uplink.sendNow(waitMs + 1000);
    const deadline = now() + waitMs;
    while (waiting() && host.uplink.connected && now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return { committed, drained: !waiting(), outbox: host.outbox.depth(), connected: host.uplink.connected };
  });

  methods.register('restartSource', async (payload) => {
    const name = field(payload, 'name');
    if (typeof name !== 'string' || name.length === 0) throw badRequest('restartSource needs {"name": "<source>"}');
    const known = Object.keys(host.health().sources);
    if (!known.includes(name))
      throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no source "${name}" (sources: ${known.join(', ') || 'none'})`, {
        details: { sources: known },
      });
    const status = await host.restartSource(name);
    host.log.info({ source: name }, 'source restarted by a direct method');
    return { name, status };
  });

  methods.register('getDiagnostics', () => {
    const h = host.health();
    const mem = process.memoryUsage();
    return {
      deviceId: host.cfg.deviceId,
      version: EDGETWIN_VERSION,
      uptimeS: Math.round((now() - startedAt) / 1000),
      identity: { epoch: host.identity.epoch, nextSeq: host.identity.nextSeq },
      outbox: host.outbox.depth(),
      sources: h.sources,
      sourceErrors: h.sourceErrors,
      healthy: h.ok,
      model: host.modelVersion === undefined ? null : { version: host.modelVersion },
      uplink: {
        url: host.cfg.uplink.url,
        connected: host.uplink.connected,
        inflightBatches: host.uplink.inflightBatches,
        drainingBacklog: host.uplink.drainingBacklog,
      },
      twin: host.twin ? { desiredVersion: host.twin.state.version } : null,
      logLevel: host.log.level,
      memory: { rssBytes: mem.rss, heapUsedBytes: mem.heapUsed },
    };
  });

  methods.register('setLogLevel', (payload) => {
    const level = field(payload, 'level');
    if (typeof level !== 'string' || !(LOG_LEVELS as readonly string[]).includes(level))
      throw badRequest(`level must be one of ${LOG_LEVELS.join(', ')}`);
    const previous = host.log.level;
    host.log.warn({ level, previous }, 'log level changed by a direct method');
    // Child loggers without a level of their own follow the root's.
    host.log.level = level;
    return { level, previous };
  });
}
