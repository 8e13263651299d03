/**
 * Where alert notifications go (config `alerts.destinations`): a generic JSON webhook signed with
 * HMAC-SHA256, a Slack or Microsoft Teams incoming webhook, or email over SMTP (STARTTLS required
 * by default, with authentication). Credentials (the webhook secret, Slack/Teams URLs — they carry
 * their secret in the path —, the SMTP password) come from a mode-600 file or an environment
 * variable (an inline `webhookUrl` only in a mode-600 config file), and are never logged: logs,
 * errors and metrics name the destination's id, never its URL.
 */
import Type, { type Static } from 'typebox';
import { readSecretFile, Section } from '../../../common/config.js';
import { EdgetwinError, ErrorCodes } from '../../../common/errors.js';

export const SEVERITIES = ['info', 'warning', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

const common = {
  id: Type.String({ pattern: '^[A-Za-z0-9._-]{1,64}$' }),
  /** Notifications below this severity are not sent here. */
  minSeverity: Type.Optional(Type.Enum(SEVERITIES)),
  /** At most this many notifications per minute (others wait their turn; none is dropped). */
  ratePerMin: Type.Optional(Type.Number({ minimum: 0.1 })),
  burst: Type.Optional(Type.Integer({ minimum: 1 })),
  timeoutMs: Type.Optional(Type.Integer({ minimum: 100 })),
};
/** A URL that is itself a credential (Slack, Teams, a webhook with a token in it): from a file or the environment. */
const secretUrl = {
  /** Inline only in a mode-600 config file (common/config.ts refuses it otherwise): prefer webhookUrlFile or webhookUrlEnv. */
  webhookUrl: Type.Optional(Type.String({ pattern: '^https?://' })),
  webhookUrlFile: Type.Optional(Type.String({ minLength: 1 })),
  webhookUrlEnv: Type.Optional(Type.String({ minLength: 1 })),
};

const webhook = Section({
  ...common,
  kind: Type.Literal('webhook'),
  ...secretUrl,
  /** HMAC key for the `x-edgetwin-signature` header (file mode 600, or the variable named by secretEnv). */
  secretFile: Type.Optional(Type.String({ minLength: 1 })),
  secretEnv: Type.Optional(Type.String({ minLength: 1 })),
});
const slack = Section({ ...common, kind: Type.Literal('slack'), ...secretUrl });
const teams = Section({ ...common, kind: Type.Literal('teams'), ...secretUrl });
const email = Section({
  ...common,
  kind: Type.Literal('email'),
  to: Type.Array(Type.String({ minLength: 3 }), { minItems: 1 }),
  from: Type.String({ minLength: 3 }),
  host: Type.String({ minLength: 1 }),
  port: Type.Integer({ minimum: 1, maximum: 65535 }),
  /** true: TLS from the first byte (port 465). false (default): plain connect, then STARTTLS. */
  secure: Type.Optional(Type.Boolean()),
  /** Refuse to send when the server does not offer STARTTLS (default true: no mail in clear text). */
  requireTls: Type.Optional(Type.Boolean()),
  user: Type.Optional(Type.String({ minLength: 1 })),
  passwordFile: Type.Optional(Type.String({ minLength: 1 })),
  passwordEnv: Type.Optional(Type.String({ minLength: 1 })),
  /** Extra CA for a relay with a private certificate. */
  caFile: Type.Optional(Type.String({ minLength: 1 })),
});

export const destinationSchema = Type.Union([webhook, slack, teams, email]);
export type DestinationConfig = Static<typeof destinationSchema>;
export type DestinationKind = DestinationConfig['kind'];

export const DESTINATION_DEFAULTS = { ratePerMin: 30, burst: 10, timeoutMs: 10_000 } as const;

/** A destination with its secrets read (kept in memory only). */
export type ResolvedDestination = DestinationConfig & {
  resolvedUrl?: string;
  secret?: string;
  password?: string;
};

function fromFileOrEnv(
  id: string,
  key: string,
  file: string | undefined,
  envName: string | undefined,
  env: NodeJS.ProcessEnv,
): string | undefined {
  if (file) return readSecretFile(file, `alerts.destinations[${id}].${key}File`);
  if (envName) {
    const v = env[envName];
    if (!v)
      throw new EdgetwinError(ErrorCodes.CONFIG, `config key "alerts.destinations[${id}].${key}Env": variable ${envName} is not set`, {
        details: { key: `alerts.destinations.${key}Env` },
      });
    return v;
  }
  return undefined;
}

/** Reads each destination's secrets; throws CONFIG for a missing or badly protected one. */
export function resolveDestination(d: DestinationConfig, env: NodeJS.ProcessEnv = process.env): ResolvedDestination {
  const fail = (msg: string): never => {
    throw new EdgetwinError(ErrorCodes.CONFIG, `alerts destination "${d.id}": ${msg}`, { details: { key: 'alerts.destinations' } });
  };
  if (d.kind === 'email') {
    const password = fromFileOrEnv(d.id, 'password', d.passwordFile, d.passwordEnv, env);
    if (password !== undefined && !d.user) fail('a password needs user');
    return { ...d, ...(password !== undefined ? { password } : {}) };
  }
  const sources = [d.webhookUrl, d.webhookUrlFile, d.webhookUrlEnv].filter((x) => x !== undefined).length;
  if (sources !== 1) fail('needs exactly one of webhookUrl, webhookUrlFile, webhookUrlEnv');
  const resolvedUrl = d.webhookUrl ?? fromFileOrEnv(d.id, 'webhookUrl', d.webhookUrlFile, d.webhookUrlEnv, env)!;
  if (!/^https?:\/\//.test(resolvedUrl)) fail('its URL must be http(s)');
  if (d.kind === 'webhook') {
    const secret = fromFileOrEnv(d.id, 'secret', d.secretFile, d.secretEnv, env);
    if (!secret) fail('a webhook needs secretFile or secretEnv (receivers check the HMAC signature)');
    return { ...d, resolvedUrl, secret: secret! };
  }
  return { ...d, resolvedUrl };
}
