/**
 * `edgetwin status`: asks running daemons for their health and prints one screen. With no URL it
 * reads the demo's `status.json` (written by `edgetwin demo`), so `npm start` then
 * `node dist/cli/edgetwin.js status` just works.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EdgetwinError, ErrorCodes, errorMessage } from '../common/errors.js';
import { redactUrl } from '../common/redact.js';
import { HELP_OPTION, helpText, intOption, parseCommand, str, type OptionTable } from './args.js';

const STATUS_OPTIONS: OptionTable = {
  token: {
    type: 'string',
    value: 'TOKEN',
    help: 'bearer token for the cloud; reads are open in the demo',
    default: 'env EDGETWIN_TOKEN, else none',
  },
  json: { type: 'boolean', help: 'print the raw health documents as JSON' },
  'timeout-ms': { type: 'string', value: 'N', help: 'per-daemon timeout', unit: 'ms', default: '3000' },
  ...HELP_OPTION,
};

export const STATUS_HELP = helpText(
  'Usage: edgetwin status [URL ...] [options]',
  STATUS_OPTIONS,
  `Asks running daemons for a one-screen summary. Each URL is a daemon's operations address: an
agent's or collector's admin server (admin.host:admin.port) or the cloud's API. Without a URL it
reads $EDGETWIN_HOME/demo/status.json, written by 'edgetwin demo'.`,
  'Exit code: 0 when every daemon answered healthy, 1 otherwise; 2 for a usage error.',
);

interface Target {
  name: string;
  url: string;
}

type Json = Record<string, unknown>;

async function getJson(url: string, timeoutMs: number, token?: string): Promise<{ status: number; body: Json }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.status, body: (await res.json()) as Json };
}

const n = (v: unknown): string => (typeof v === 'number' ? v.toLocaleString('en-US') : '—');

/** One line per daemon, shaped by what its /healthz says. */
export function describe(h: Json): { kind: string; line: string } {
  if (h['spool'] && typeof h['spool'] === 'object') {
    const spool = h['spool'] as Json;
    const sinks = Object.entries((h['sinks'] ?? {}) as Record<string, Json>)
      .map(([k, v]) => `${k} ${v['ok'] ? 'ok' : `FAILING (${String(v['lastError'] ?? '?').slice(0, 60)})`}`)
      .join(', ');
    return {
      kind: 'collector',
      line: `clients ${n(h['clients'])} · spool ${n(spool['rows'])} rows / ${n(spool['bytes'])} B · sinks ${sinks || 'none'}`,
    };
  }
  if (h['outbox'] && typeof h['outbox'] === 'object') {
    const o = h['outbox'] as Json;
    const errors = Object.keys((h['sourceErrors'] ?? {}) as Json);
    return {
      kind: 'agent',
      line: `${h['connected'] ? 'connected' : 'OFFLINE (buffering)'} · outbox ${n(o['rows'])} rows / ${n(o['bytes'])} B · epoch ${n(h['epoch'])}${errors.length ? ` · failing sources: ${errors.join(', ')}` : ''}`,
    };
  }
  if (h['lakehouse'] && typeof h['lakehouse'] === 'object') {
    const l = h['lakehouse'] as Json;
    const blob = l['blob'] as Json | undefined;
    const eh = h['eventHubs'] as Json | undefined;
    const reasons = Array.isArray(h['reasons']) ? (h['reasons'] as string[]) : [];
    return {
      kind: 'cloud',
      line: [
        `lakehouse staged ${n(l['pendingBatches'])} batches / ${n(l['pendingBytes'])} B`,
        `last flush ${typeof l['lastFlushAt'] === 'string' ? l['lastFlushAt'] : 'none yet'}`,
        ...(blob ? [`blob copy ${blob['failingSinceMs'] ? 'FAILING' : 'ok'}`] : []),
        ...(eh ? [`event hubs ${eh['healthy'] ? 'ok' : 'FAILING'}`] : []),
        ...reasons,
      ].join(' · '),
    };
  }
  const parts = Object.entries(h)
    .filter(([k, v]) => k !== 'ok' && (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean'))
    .slice(0, 6)
    .map(([k, v]) => `${k} ${String(v)}`);
  return { kind: 'cloud', line: parts.join(' · ') };
}

function targetsFromDemo(): Target[] {
  const file = join(process.env['EDGETWIN_HOME'] ?? 'var', 'demo', 'status.json');
  if (!existsSync(file))
    throw new EdgetwinError(
      ErrorCodes.USAGE,
      `no URL given and no running demo found (${file}); pass daemon URLs, e.g. edgetwin status http://127.0.0.1:8480`,
    );
  return (JSON.parse(readFileSync(file, 'utf8')) as { targets: Target[] }).targets;
}

export async function runStatus(args: string[], out: (l: string) => void): Promise<number> {
  const { values, positionals } = parseCommand('edgetwin status', args, STATUS_OPTIONS, { positionals: true });

  if (values.help) {
    out(STATUS_HELP);
    return 0;
  }
  const timeoutMs = intOption('edgetwin status', 'timeout-ms', str(values, 'timeout-ms'), 3000, 1, 600_000);
  const token = str(values, 'token') ?? process.env['EDGETWIN_TOKEN'];
  const targets = positionals.length ? positionals.map((url) => ({ name: '', url: url.replace(/\/$/, '') })) : targetsFromDemo();
  const results = await Promise.all(
    targets.map(async (t) => {
      try {
        const r = await getJson(`${t.url}/healthz`, timeoutMs, token);
        return { ...t, ok: r.status === 200 && r.body['ok'] !== false, health: r.body, error: undefined as string | undefined };
      } catch (err) {
        return { ...t, ok: false, health: undefined, error: errorMessage(err) };
      }
    }),
  );
  if (values.json) {
    out(
      JSON.stringify(
        results.map(({ name, url, ok, health, error }) => ({ name, url: redactUrl(url), ok, health, error })),
        null,
        2,
      ),
    );
  } else {
    const rows = results.map((r) => {
      const d = r.health ? describe(r.health) : { kind: '?', line: `unreachable: ${r.error}` };
      return [r.name || d.kind, redactUrl(r.url), r.ok ? 'ok' : 'NOT OK', d.line];
    });
    const w = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) out(`${r[0]!.padEnd(w[0]!)}  ${r[1]!.padEnd(w[1]!)}  ${r[2]!.padEnd(w[2]!)}  ${r[3]}`);
  }
  return results.every((r) => r.ok) ? 0 : 1;
}
