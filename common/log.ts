import { pino, type Logger, type LoggerOptions } from 'pino';
import Type, { type Static } from 'typebox';
import { Section } from './config.js';
import { redactDeep, redactText } from './redact.js';

export type { Logger };

/** Paths that may hold secrets anywhere in a logged object; pino replaces them before writing. */
export const REDACT_PATHS = [
  'password',
  '*.password',
  'token',
  '*.token',
  'key',
  '*.key',
  'sharedAccessKey',
  '*.sharedAccessKey',
  'connectionString',
  '*.connectionString',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
  '*.*.password',
  '*.*.token',
  '*.*.key',
  '*.*.connectionString',
];

/** Unset: EDGETWIN_LOG_LEVEL, else `info`. */
export const logConfigSchema = Section({ level: Type.Optional(Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])) });
export type LogConfig = Required<Static<typeof logConfigSchema>>;

export function createLogger(name: string, cfg: Partial<LogConfig> = {}, dest?: pino.DestinationStream): Logger {
  const opts: LoggerOptions = {
    name,
    level: cfg.level ?? process.env['EDGETWIN_LOG_LEVEL'] ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Secrets inside strings (URL userinfo, SAS signatures, access_token=…) that no path names.
    formatters: { log: (obj) => redactDeep(obj) as Record<string, unknown> },
    hooks: {
      logMethod(args, method) {
        for (let i = 0; i < args.length; i++) if (typeof args[i] === 'string') args[i] = redactText(args[i] as string);
        method.apply(this, args);
      },
    },
  };
  return dest ? pino(opts, dest) : pino(opts);
}
