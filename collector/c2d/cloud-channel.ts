/**
 * CloudChannel: the collector's push channel from the cloud — one WebSocket the collector opens
 * (`GET /v1/sites/{site}/channel`, site token), so a site behind outbound-only connectivity still
 * gets method calls within milliseconds instead of at the next desired-feed poll. It reconnects
 * with jittered backoff and pings the cloud: a connection that stops answering is dropped after
 * two ping intervals, not left half-open. Frames are JSON text (common/wire/c2d-protocol.ts).
 */
import WebSocket from 'ws';
import { Backoff, type BackoffConfig } from '../../common/backoff.js';
import { ErrorCodes, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { counter, gauge, type Registry } from '../../common/metrics.js';
import { parseCloudFrame, type CloudFrame, type CollectorFrame } from '../../common/wire/c2d-protocol.js';

export interface CloudChannelConfig {
  /** Base URL of the cloud API (http/https; the channel uses ws/wss on the same host). */
  url: string;
  token?: string | undefined;
  siteId: string;
  pingIntervalMs: number;
  connectTimeoutMs: number;
  backoff: BackoffConfig;
}

export interface ChannelEvents {
  onOpen(): void;
  onFrame(frame: CloudFrame): void;
}

export class CloudChannel {
  private ws: WebSocket | undefined;
  private readonly backoff: Backoff;
  private retryTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private alive = false;
  private stopped = true;
  private failures = 0;
  private readonly endpoint: string;
  private readonly mConnected;
  private readonly mConnects;
  private readonly mFrames;

  constructor(
    private readonly cfg: CloudChannelConfig,
    private readonly events: ChannelEvents,
    private readonly deps: { log: Logger; registry: Registry },
  ) {
    const u = new URL(cfg.url);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    u.pathname = `${u.pathname.replace(/\/$/, '')}/v1/sites/${encodeURIComponent(cfg.siteId)}/channel`;
    this.endpoint = u.toString();
    this.backoff = new Backoff(cfg.backoff);
    const r = deps.registry;
    this.mConnected = gauge(r, 'edgetwin_c2d_channel_connected', '1 while the push channel from the cloud is open');
    this.mConnects = counter(r, 'edgetwin_c2d_channel_connects_total', 'Push-channel connection attempts, by result', ['result']);
    this.mFrames = counter(r, 'edgetwin_c2d_channel_frames_total', 'Frames on the push channel, by direction and type', ['dir', 't']);
  }

  get connected(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  /** Sends a frame if the channel is open; false when it is not (the caller keeps what must not be lost). */
  send(frame: CollectorFrame): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(frame));
    this.mFrames.inc({ dir: 'out', t: frame.t });
    return true;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    const ws = this.ws;
    this.ws = undefined;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        ws.terminate();
        resolve();
      }, 1000);
      ws.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      ws.close(1001, 'collector stopping');
    });
  }

  private connect(): void {
    if (this.stopped) return;
    const headers: Record<string, string> = {};
    if (this.cfg.token) headers['authorization'] = `Bearer ${this.cfg.token}`;
    const ws = new WebSocket(this.endpoint, { headers, handshakeTimeout: this.cfg.connectTimeoutMs, perMessageDeflate: false });
    this.ws = ws;
    let opened = false;
    ws.on('open', () => {
      opened = true;
      this.alive = true;
      this.mConnects.inc({ result: 'ok' });
      this.mConnected.set(1);
      if (this.failures > 0) this.deps.log.info({ failures: this.failures }, 'push channel to the cloud open again');
      else this.deps.log.info({ url: this.endpoint }, 'push channel to the cloud open');
      this.failures = 0;
      this.backoff.reset();
      this.pingTimer = setInterval(() => this.ping(ws), this.cfg.pingIntervalMs);
      this.pingTimer.unref();
      this.events.onOpen();
    });
    ws.on('pong', () => (this.alive = true));
    ws.on('message', (data, isBinary) => {
      if (isBinary) return this.drop(ws, 'binary frame');
      let frame: CloudFrame;
      try {
        frame = parseCloudFrame(data.toString());
      } catch (err) {
        return this.drop(ws, errorMessage(err));
      }
      this.mFrames.inc({ dir: 'in', t: frame.t });
      this.events.onFrame(frame);
    });
    ws.on('unexpected-response', (_req, res) => {
      // 401/403: a wrong or revoked site token; 404: a cloud without the channel. Retried with backoff all the same.
      this.note(`cloud answered ${res.statusCode} to the channel upgrade`, res.statusCode === 401 || res.statusCode === 403);
      res.resume();
      ws.terminate();
    });
    ws.on('error', (err) => {
      if (!opened) this.note(errorMessage(err), false);
      else this.deps.log.debug({ err }, 'push channel error');
    });
    ws.on('close', () => {
      clearInterval(this.pingTimer);
      this.mConnected.set(0);
      if (this.ws === ws) this.ws = undefined;
      if (this.stopped) return;
      if (opened) this.deps.log.warn('push channel to the cloud closed; reconnecting');
      clearTimeout(this.retryTimer);
      // After a connection that was up the backoff starts over (a first retry within ~initialMs); two
      // collectors fighting over one site id, or a cloud that drops us at once, still back off.
      this.retryTimer = setTimeout(() => this.connect(), this.backoff.next());
      this.retryTimer.unref();
    });
  }

  private ping(ws: WebSocket): void {
    if (!this.alive) {
      this.deps.log.warn({ pingIntervalMs: this.cfg.pingIntervalMs }, 'push channel: no pong from the cloud; reconnecting');
      return ws.terminate();
    }
    this.alive = false;
    ws.ping();
  }

  private note(why: string, auth: boolean): void {
    this.mConnects.inc({ result: auth ? 'refused' : 'error' });
    // The first failure of a run at warn, the rest at debug: an offline site retries for hours.
    const level = this.failures++ === 0 ? 'warn' : 'debug';
    this.deps.log[level](
      { code: auth ? ErrorCodes.UNAUTHORIZED : ErrorCodes.UPLINK, err: why },
      'push channel to the cloud failed; retrying',
    );
  }

  private drop(ws: WebSocket, why: string): void {
    this.deps.log.warn({ code: ErrorCodes.BAD_PAYLOAD, err: why }, 'push channel: bad frame from the cloud; reconnecting');
    ws.terminate();
  }
}
