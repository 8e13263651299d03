/**
 * One site collector's open channel, as this replica holds it: method calls go down and their
 * answers come back by call id; pending device-bound messages of the site go down (each at most
 * once per connection — a new connection gets every still-pending one again, the collector drops
 * what it already has) and the collector's `queued` and feedback frames move their state. Whatever
 * a collector says is applied to its own site's rows only.
 */
import type WebSocket from 'ws';
import { EdgetwinError, ErrorCodes, errorMessage, isErrorCode, type ErrorCode } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { parseCollectorFrame, type CloudFrame, type CollectorFrame, type MethodCall } from '../../common/wire/c2d-protocol.js';
import type { CloudMessageStore } from './message-store.js';

export type { MethodCall } from '../../common/wire/c2d-protocol.js';

export interface MethodAnswer {
  status: number;
  payload: unknown;
}

interface Pending {
  resolve: (a: MethodAnswer) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** Pending messages sent per frame. */
const MESSAGE_PAGE = 200;
/** Beyond the device's own timeouts, how long the cloud waits for the collector's answer before it gives up (504). */
const ANSWER_GRACE_MS = 2000;

export class SiteChannel {
  private readonly pending = new Map<string, Pending>();
  /** Highest message seq sent on this connection. */
  private sentSeq = 0;
  private pushing: Promise<void> | undefined;
  private pushAgain = false;
  private closed = false;
  alive = true;

  constructor(
    readonly site: string,
    private readonly ws: WebSocket,
    private readonly deps: { messages: CloudMessageStore; log: Logger; onClosed: (ch: SiteChannel) => void },
  ) {
    ws.on('message', (data, isBinary) => {
      if (isBinary) return this.drop('binary frame');
      let frame: CollectorFrame;
      try {
        frame = parseCollectorFrame(data.toString());
      } catch (err) {
        return this.drop(errorMessage(err));
      }
      void this.onFrame(frame).catch((err: unknown) =>
        deps.log.warn({ site, t: frame.t, err }, 'channel frame not applied (the collector sends it again)'),
      );
    });
    ws.on('pong', () => (this.alive = true));
    ws.on('close', () => this.onClose());
    ws.on('error', (err) => deps.log.debug({ site, err: err.message }, 'channel socket error'));
  }

  get inflight(): number {
    return this.pending.size;
  }

  get open(): boolean {
    return !this.closed;
  }

  /** Sends a method call and resolves with the device's answer (or rejects with the collector's code). */
  invoke(call: MethodCall): Promise<MethodAnswer> {
    if (this.closed) return Promise.reject(gone(this.site));
    return new Promise<MethodAnswer>((resolve, reject) => {
      const wait = call.connectTimeoutMs + call.responseTimeoutMs + ANSWER_GRACE_MS;
      const timer = setTimeout(() => {
        if (!this.pending.delete(call.id)) return;
        reject(
          new EdgetwinError(ErrorCodes.METHOD_TIMEOUT, `no answer from site ${this.site} within ${wait} ms`, {
            details: { site: this.site, device: call.device },
          }),
        );
      }, wait);
      this.pending.set(call.id, { resolve, reject, timer });
      this.send({ t: 'invoke', ...call });
    });
  }

  /** Sends the site's pending messages not yet sent on this connection. */
  pushMessages(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.pushing) {
      this.pushAgain = true;
      return this.pushing;
    }
    this.pushing = (async () => {
      try {
        do {
          this.pushAgain = false;
          for (;;) {
            const page = await this.deps.messages.pendingForSite(this.site, this.sentSeq, MESSAGE_PAGE);
            if (page.length === 0 || this.closed) break;
            this.sentSeq = page[page.length - 1]!.seq;
            this.send({ t: 'messages', items: page.map((p) => p.message) });
            if (page.length < MESSAGE_PAGE) break;
          }
        } while (this.pushAgain && !this.closed);
      } finally {
        this.pushing = undefined;
      }
    })();
    return this.pushing;
  }

  ping(): void {
    if (!this.alive) {
      this.deps.log.warn({ site: this.site }, 'channel: no pong from the collector; closing');
      this.ws.terminate();
      return;
    }
    this.alive = false;
    this.ws.ping();
  }

  close(code: number, reason: string): void {
    this.ws.close(code, reason);
    // A peer that does not finish the close handshake is cut off.
    setTimeout(() => this.ws.terminate(), 1000).unref();
  }

  private send(frame: CloudFrame): void {
    this.ws.send(JSON.stringify(frame));
  }

  private async onFrame(f: CollectorFrame): Promise<void> {
    switch (f.t) {
      case 'result':
      case 'failed': {
        const p = this.pending.get(f.id);
        if (!p) return; // answered after the cloud gave up
        clearTimeout(p.timer);
        this.pending.delete(f.id);
        if (f.t === 'result') return p.resolve({ status: f.status, payload: f.payload });
        const code: ErrorCode = isErrorCode(f.code) ? f.code : ErrorCodes.GATEWAY;
        return p.reject(new EdgetwinError(code, f.message, { details: { site: this.site } }));
      }
      case 'queued':
        return this.deps.messages.queued(this.site, f.ids);
      case 'feedback':
        await this.deps.messages.feedback(this.site, f.items);
        // Only once stored: the collector forgets its copy when it reads this.
        if (!this.closed) this.send({ t: 'feedback-ack', ids: f.items.map((i) => i.id) });
        return;
    }
  }

  private drop(why: string): void {
    this.deps.log.warn({ site: this.site, code: ErrorCodes.BAD_PAYLOAD, err: why }, 'channel: bad frame from the collector; closing');
    this.ws.terminate();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(gone(this.site));
    }
    this.deps.onClosed(this);
  }
}

function gone(site: string): EdgetwinError {
  return new EdgetwinError(
    ErrorCodes.GATEWAY,
    `the collector of site ${site} disconnected before the device answered (the method may or may not have run)`,
    { details: { site } },
  );
}
