/**
 * The cloud end of the collectors' push channels: `GET /v1/sites/{site}/channel` upgraded to a
 * WebSocket on the API's own HTTP server. The caller must hold a collector token of that site (or
 * be admin); the token is checked again at every ping, so revoking it closes the channel within a
 * ping interval. One channel per site: a new connection of the same site replaces the old one (a
 * restarted collector whose old socket has not timed out yet).
 */
import { STATUS_CODES, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { EdgetwinError, ErrorCodes, errorMessage, isEdgetwinError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { gauge, counter, type Registry } from '../../common/metrics.js';
import type { Authenticator } from '../auth/authenticator.js';
import { requireSite } from '../auth/site-policy.js';
import type { Principal } from '../auth/tokens.js';
import type { CloudMessageStore } from './message-store.js';
import { SiteChannel } from './site-channel.js';

const PATH = /^\/v1\/sites\/((?!\.{1,2}\/)[A-Za-z0-9._-]{1,64})\/channel\/?(?:\?.*)?$/;
/** Largest frame a collector may send (a page of feedback, a method answer of 128 KiB). */
const MAX_FRAME_BYTES = 4 * 1024 * 1024;

export interface ChannelServerDeps {
  auth: Authenticator;
  messages: CloudMessageStore;
  log: Logger;
  registry: Registry;
  pingIntervalMs: number;
  /** A site's channel opened or closed on this replica. */
  onChange: (site: string, ch: SiteChannel | undefined) => void;
}

export class ChannelServer {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });
  readonly channels = new Map<string, SiteChannel>();
  private readonly principals = new Map<SiteChannel, { token: string | undefined; principal: Principal }>();
  private pingTimer: NodeJS.Timeout | undefined;
  private server: Server | undefined;
  private readonly mChannels;
  private readonly mRefused;

  constructor(private readonly deps: ChannelServerDeps) {
    this.mChannels = gauge(deps.registry, 'edgetwin_cloud_c2d_channels', 'Site collectors whose push channel this replica holds');
    this.mRefused = counter(deps.registry, 'edgetwin_cloud_c2d_channel_refused_total', 'Channel upgrades refused, by code', ['code']);
  }

  /** Takes the channel's upgrades on the API server. */
  attach(server: Server): void {
    this.server = server;
    server.on('upgrade', this.onUpgrade);
    this.pingTimer = setInterval(() => void this.tick(), this.deps.pingIntervalMs);
    this.pingTimer.unref();
  }

  get(site: string): SiteChannel | undefined {
    const ch = this.channels.get(site);
    return ch?.open ? ch : undefined;
  }

  async close(): Promise<void> {
    clearInterval(this.pingTimer);
    this.server?.off('upgrade', this.onUpgrade);
    for (const ch of this.channels.values()) ch.close(1001, 'cloud stopping');
    this.channels.clear();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', () => undefined);
    const m = PATH.exec(req.url ?? '');
    // With an 'upgrade' listener node leaves every upgrade request to it: one for another path
    // must be answered here, or its socket would stay open forever.
    if (!m) return void socket.end(refusal(404, ErrorCodes.NOT_FOUND, 'no WebSocket endpoint here'));
    const site = m[1]!;
    const token = bearer(req.headers.authorization);
    this.admit(token, site).then(
      (principal) =>
        this.wss.handleUpgrade(req, socket, head, (ws) => {
          this.open(site, ws, { token, principal });
        }),
      (err: unknown) => {
        const code = isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL;
        const status = isEdgetwinError(err) ? err.status : 500;
        this.mRefused.inc({ code });
        this.deps.log.warn({ site, code, err: errorMessage(err) }, 'channel upgrade refused');
        socket.end(refusal(status, code, errorMessage(err)));
      },
    );
  };

  /** A collector token of this site, or admin; anything else is refused. */
  private async admit(token: string | undefined, site: string): Promise<Principal> {
    const p = await this.deps.auth.authenticate(token === undefined ? undefined : `Bearer ${token}`);
    if (p.role !== 'collector' && p.role !== 'admin') {
      throw new EdgetwinError(ErrorCodes.FORBIDDEN, `role ${p.role} may not open a site channel`, { details: { role: p.role } });
    }
    requireSite(p, site);
    return p;
  }

  private open(site: string, ws: WebSocket, who: { token: string | undefined; principal: Principal }): void {
    const old = this.channels.get(site);
    const ch = new SiteChannel(site, ws, {
      messages: this.deps.messages,
      log: this.deps.log,
      onClosed: (c) => {
        this.principals.delete(c);
        if (this.channels.get(site) !== c) return;
        this.channels.delete(site);
        this.mChannels.set(this.channels.size);
        this.deps.log.info({ site }, 'site channel closed');
        this.deps.onChange(site, undefined);
      },
    });
    this.channels.set(site, ch);
    this.principals.set(ch, who);
    this.mChannels.set(this.channels.size);
    if (old) old.close(4000, 'replaced by a new connection of the same site');
    this.deps.log.info({ site, by: who.principal.name, replaced: old !== undefined }, 'site channel open');
    this.deps.onChange(site, ch);
  }

  /** Pings every channel and checks its token again (revoked: closed). */
  private async tick(): Promise<void> {
    for (const [ch, who] of this.principals) {
      ch.ping();
      try {
        await this.admit(who.token, ch.site);
      } catch (err) {
        this.deps.log.warn({ site: ch.site, err: errorMessage(err) }, 'channel token no longer valid; closing');
        ch.close(4401, 'token revoked');
      }
    }
  }
}

/** A plain HTTP answer on an upgrade socket: `{code, message}` like every error of the API. */
function refusal(status: number, code: string, message: string): string {
  const body = JSON.stringify({ code, message });
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}

function bearer(h: string | undefined): string | undefined {
  return h?.startsWith('Bearer ') ? h.slice(7).trim() : undefined;
}
