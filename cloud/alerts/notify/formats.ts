/**
 * One alert notification rendered for each kind of destination. Pure functions (tests compare
 * their output with what the receivers got). The generic webhook carries the NotificationBody as
 * is, signed: `x-edgetwin-signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` with
 * `x-edgetwin-timestamp` (Unix seconds) — a receiver recomputes it and refuses a stale timestamp
 * (replay) — and `x-edgetwin-delivery` (stable across retries: receivers dedupe on it).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { NotificationBody } from '../types.js';

export interface HttpMessage {
  headers: Record<string, string>;
  body: string;
}

export interface MailMessage {
  subject: string;
  text: string;
  html: string;
}

const COLOR = { critical: '#d13438', warning: '#f7b500', info: '#0078d4', resolved: '#2e8540' } as const;

export function title(n: NotificationBody): string {
  const a = n.alert;
  const what = n.event === 'firing' ? `[${a.severity.toUpperCase()}] ${a.ruleName}` : `[RESOLVED] ${a.ruleName}`;
  return `${what}: ${a.key}`;
}

function facts(n: NotificationBody): [string, string][] {
  const a = n.alert;
  const rows: [string, string][] = [
    ['Rule', `${a.ruleName} (${a.kind})`],
    ['Severity', a.severity],
  ];
  if (a.site) rows.push(['Site', a.site]);
  if (a.device) rows.push(['Device', a.device]);
  if (a.value !== null) rows.push(['Value', String(Math.round(a.value * 1e4) / 1e4)]);
  rows.push(['Since', a.firedAt ?? a.startedAt]);
  if (n.event === 'resolved' && a.resolvedAt) rows.push(['Resolved', a.resolvedAt]);
  for (const [k, v] of Object.entries(a.labels)) rows.push([k, v]);
  return rows;
}

export function signWebhook(secret: string, timestampS: number, body: string): string {
  return `v1=${createHmac('sha256', secret).update(`${timestampS}.${body}`).digest('hex')}`;
}

/** What a receiver does (documented, and used by the tests): recompute, compare in constant time, bound the age. */
export function verifyWebhook(
  secret: string,
  headers: Record<string, string | undefined>,
  body: string,
  nowS: number,
  maxAgeS = 300,
): boolean {
  const ts = Number(headers['x-edgetwin-timestamp']);
  const sig = headers['x-edgetwin-signature'] ?? '';
  if (!Number.isInteger(ts) || Math.abs(nowS - ts) > maxAgeS) return false;
  const want = Buffer.from(signWebhook(secret, ts, body));
  const got = Buffer.from(sig);
  return want.length === got.length && timingSafeEqual(want, got);
}

export function webhookMessage(n: NotificationBody, secret: string, deliveryId: string, nowMs: number): HttpMessage {
  const body = JSON.stringify(n);
  const ts = Math.floor(nowMs / 1000);
  return {
    body,
    headers: {
      'content-type': 'application/json',
      'x-edgetwin-event': `alert.${n.event}`,
      'x-edgetwin-delivery': deliveryId,
      'x-edgetwin-timestamp': String(ts),
      'x-edgetwin-signature': signWebhook(secret, ts, body),
    },
  };
}

/** Slack incoming webhook: `text` (notifications, fallbacks) plus Block Kit blocks. */
export function slackMessage(n: NotificationBody): HttpMessage {
  const fields = facts(n).map(([k, v]) => ({ type: 'mrkdwn', text: `*${k}*\n${escapeSlack(v)}` }));
  const blocks: unknown[] = [
    { type: 'header', text: { type: 'plain_text', text: title(n).slice(0, 150) } },
    { type: 'section', text: { type: 'mrkdwn', text: escapeSlack(n.alert.summary) } },
    // Slack allows at most 10 fields per section.
    { type: 'section', fields: fields.slice(0, 10) },
  ];
  if (n.url) blocks.push({ type: 'section', text: { type: 'mrkdwn', text: `<${n.url}|Open in edgetwin>` } });
  return { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: `${title(n)} — ${n.alert.summary}`, blocks }) };
}

/** Microsoft Teams incoming webhook (Workflows): a message with one Adaptive Card. */
export function teamsMessage(n: NotificationBody): HttpMessage {
  const color =
    n.event === 'resolved' ? 'Good' : n.alert.severity === 'critical' ? 'Attention' : n.alert.severity === 'warning' ? 'Warning' : 'Accent';
  const card = {
    type: 'AdaptiveCard',
    $schema: 'http://adaptivecards.io/schemas/adaptive-card.json',
    version: '1.4',
    body: [
      { type: 'TextBlock', size: 'Medium', weight: 'Bolder', color, text: title(n), wrap: true },
      { type: 'TextBlock', text: n.alert.summary, wrap: true },
      { type: 'FactSet', facts: facts(n).map(([title, value]) => ({ title, value })) },
    ],
    ...(n.url ? { actions: [{ type: 'Action.OpenUrl', title: 'Open in edgetwin', url: n.url }] } : {}),
  };
  return {
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      type: 'message',
      attachments: [{ contentType: 'application/vnd.microsoft.card.adaptive', contentUrl: null, content: card }],
    }),
  };
}

export function mailMessage(n: NotificationBody): MailMessage {
  const rows = facts(n);
  const color = n.event === 'resolved' ? COLOR.resolved : COLOR[n.alert.severity];
  const text = [title(n), '', n.alert.summary, '', ...rows.map(([k, v]) => `${k}: ${v}`), ...(n.url ? ['', n.url] : [])].join('\n');
  const html =
    `<h2 style="color:${color}">${escapeHtml(title(n))}</h2><p>${escapeHtml(n.alert.summary)}</p><table>` +
    rows.map(([k, v]) => `<tr><th align="left">${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join('') +
    `</table>${n.url ? `<p><a href="${escapeHtml(n.url)}">Open in edgetwin</a></p>` : ''}`;
  // Subjects are one line: a device id or label with a newline must not inject mail headers.
  return {
    subject: title(n)
      .replace(/[\r\n]+/g, ' ')
      .slice(0, 200),
    text,
    html,
  };
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Slack's control characters in mrkdwn: a device id must not become a link or a mention. */
function escapeSlack(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
