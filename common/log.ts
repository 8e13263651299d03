import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/** Paths that may hold secrets anywhere in a logged object; pino replaces them before writing. */
export const REDACT_PATHS = [
  'password', '*.password', 'token', '*.token', 'key', '*.key', 'sharedAccessKey', '*.sharedAccessKey',
  'connectionString', '*.connectionString', 'authorization', '*.authorization', 'headers.authorization',
  'req.headers.authorization', '*.*.password', '*.*.token', '*.*.key', '*.*.connectionString',
];

export interface LogConfig {
  level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

export const logConfigSchema = {
  type: 'object',
  additionalProperties: false,
  properties: { level: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] } },
} as const;

export function createLogger(name: string, cfg: Partial<LogConfig> = {}, dest?: pino.DestinationStream): Logger {
  const opts: LoggerOptions = {
    name,
    level: cfg.level ?? process.env['EDGETWIN_LOG_LEVEL'] ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return dest ? pino(opts, dest) : pino(opts);
}
