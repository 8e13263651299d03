/**
 * Sends one rendered notification to one destination: HTTP POST (undici) for webhook, Slack and
 * Teams; SMTP (nodemailer) for email. A failure says whether a retry can help: network errors,
 * timeouts, 408/429/5xx and SMTP 4xx are retried (429's Retry-After honoured); any other 4xx and
 * SMTP 5xx (bad payload, unknown mailbox, refused credentials) would fail the same way again and go
 * to the dead letter at once.
 */
import { readFileSync } from 'node:fs';
import { createTransport, type Transporter } from 'nodemailer';
import { request } from 'undici';
import { errorMessage } from '../../../common/errors.js';
import type { NotificationBody } from '../types.js';
import { DESTINATION_DEFAULTS, type ResolvedDestination } from './destinations.js';
import { mailMessage, slackMessage, teamsMessage, webhookMessage, type HttpMessage } from './formats.js';

export class DeliveryError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly retryAfterMs?: number,
    opts?: { cause?: unknown },
  ) {
    super(message, opts);
    this.name = 'DeliveryError';
  }
}

export interface Sender {
  send(n: NotificationBody, deliveryId: string): Promise<void>;
  close(): void;
}

function retryAfterMs(h: string | string[] | undefined): number | undefined {
  const v = Array.isArray(h) ? h[0] : h;
  if (!v) return undefined;
  const s = Number(v);
  if (Number.isFinite(s)) return Math.max(0, s * 1000);
  const at = Date.parse(v);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}

class HttpSender implements Sender {
  constructor(
    private readonly d: ResolvedDestination,
    private readonly now: () => number,
  ) {}

  private render(n: NotificationBody, deliveryId: string): HttpMessage {
    if (this.d.kind === 'webhook') return webhookMessage(n, this.d.secret!, deliveryId, this.now());
    if (this.d.kind === 'slack') return slackMessage(n);
    return teamsMessage(n);
  }

  async send(n: NotificationBody, deliveryId: string): Promise<void> {
    const msg = this.render(n, deliveryId);
    const timeoutMs = this.d.timeoutMs ?? DESTINATION_DEFAULTS.timeoutMs;
    let res;
    try {
      res = await request(this.d.resolvedUrl!, {
        method: 'POST',
        headers: msg.headers,
        body: msg.body,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      // The URL may hold a secret (Slack, Teams): never put it in the message.
      throw new DeliveryError(`${this.d.kind} ${this.d.id}: ${errorMessage(err).replace(this.d.resolvedUrl!, '<url>')}`, true, undefined, {
        cause: err,
      });
    }
    const text = (await res.body.text()).slice(0, 200);
    if (res.statusCode >= 200 && res.statusCode < 300) return;
    const retryable = res.statusCode === 408 || res.statusCode === 429 || res.statusCode >= 500;
    throw new DeliveryError(
      `${this.d.kind} ${this.d.id}: HTTP ${res.statusCode} ${text}`,
      retryable,
      retryAfterMs(res.headers['retry-after']),
    );
  }

  close(): void {}
}

class SmtpSender implements Sender {
  private readonly transport: Transporter;

  constructor(private readonly d: Extract<ResolvedDestination, { kind: 'email' }>) {
    const timeoutMs = d.timeoutMs ?? DESTINATION_DEFAULTS.timeoutMs;
    this.transport = createTransport({
      host: d.host,
      port: d.port,
      secure: d.secure ?? false,
      // STARTTLS or nothing: alert mail names devices and sites, and the login must not go in clear.
      requireTLS: d.secure ? false : (d.requireTls ?? true),
      ...(d.user ? { auth: { user: d.user, pass: d.password ?? '' } } : {}),
      ...(d.caFile ? { tls: { ca: readFileSync(d.caFile) } } : {}),
      connectionTimeout: timeoutMs,
      greetingTimeout: timeoutMs,
      socketTimeout: timeoutMs,
    });
  }

  async send(n: NotificationBody, deliveryId: string): Promise<void> {
    const m = mailMessage(n);
    try {
      await this.transport.sendMail({
        from: this.d.from,
        to: this.d.to,
        subject: m.subject,
        text: m.text,
        html: m.html,
        // Stable across retries: a mail system that saw it once can drop the copy.
        messageId: `<${deliveryId}@edgetwin>`,
        headers: { 'X-Edgetwin-Event': `alert.${n.event}`, 'X-Edgetwin-Alert': n.alert.id },
      });
    } catch (err) {
      const code = (err as { responseCode?: number }).responseCode;
      const retryable = code === undefined || code < 500;
      throw new DeliveryError(`email ${this.d.id}: ${errorMessage(err)}`, retryable, undefined, { cause: err });
    }
  }

  close(): void {
    this.transport.close();
  }
}

export function createSender(d: ResolvedDestination, now: () => number = Date.now): Sender {
  return d.kind === 'email' ? new SmtpSender(d) : new HttpSender(d, now);
}
