/**
 * Request loggers made on first use. fastify makes a pino child per request (`req.log`), and with
 * the logger's redact paths (common/log.ts) that child costs about as much as the twin read it
 * serves, while request logging is off and almost every request never logs. The child gets the
 * same bindings and options when something does log, so log lines are unchanged.
 */
import type { FastifyBaseLogger } from 'fastify';

type Bindings = Parameters<FastifyBaseLogger['child']>[0];
type ChildOptions = Parameters<FastifyBaseLogger['child']>[1];
type AnyLog = (...args: unknown[]) => void;

class LazyChildLogger {
  private real: FastifyBaseLogger | undefined;
  constructor(
    private readonly parent: FastifyBaseLogger,
    private readonly bindings: Bindings,
    private readonly opts: ChildOptions,
  ) {}
  private get log(): FastifyBaseLogger {
    return (this.real ??= this.parent.child(this.bindings, this.opts));
  }
  get level(): string {
    return this.real?.level ?? this.opts?.level ?? this.parent.level;
  }
  set level(l: string) {
    this.log.level = l;
  }
  fatal(...a: unknown[]): void {
    (this.log.fatal as AnyLog)(...a);
  }
  error(...a: unknown[]): void {
    (this.log.error as AnyLog)(...a);
  }
  warn(...a: unknown[]): void {
    (this.log.warn as AnyLog)(...a);
  }
  info(...a: unknown[]): void {
    (this.log.info as AnyLog)(...a);
  }
  debug(...a: unknown[]): void {
    (this.log.debug as AnyLog)(...a);
  }
  trace(...a: unknown[]): void {
    (this.log.trace as AnyLog)(...a);
  }
  silent(...a: unknown[]): void {
    (this.log.silent as AnyLog)(...a);
  }
  child(bindings: Bindings, opts?: ChildOptions): FastifyBaseLogger {
    return this.log.child(bindings, opts);
  }
}

/** fastify's `childLoggerFactory`: the per-request child, built only when it is used. */
export function lazyChildLogger(logger: FastifyBaseLogger, bindings: Bindings, opts: ChildOptions): FastifyBaseLogger {
  return new LazyChildLogger(logger, bindings, opts) as unknown as FastifyBaseLogger;
}
