/**
 * The cloud's cloud-to-device service (issue 18): direct methods and device-bound messages for
 * the API routes (cloud/api/routes/c2d.ts), over the collectors' push channels
 * (channel-server.ts). A method call goes to the channel of the device's site on this replica, or
 * through the store to the replica that holds it (method-relay.ts, PostgreSQL only); a message is
 * stored first, then sent by whichever replica holds the site's channel when the bus wakes it.
 */
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { EdgetwinError, ErrorCodes, isEdgetwinError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { KeyedWaiters } from '../../common/keyed-waiters.js';
import { counter, histogram, type Registry } from '../../common/metrics.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Authenticator } from '../auth/authenticator.js';
import type { Principal } from '../auth/tokens.js';
import type { Store } from '../store/store.js';
import { AuditBatch } from './audit-batch.js';
import { ChannelServer } from './channel-server.js';
import type { CloudC2dConfig } from './config.js';
import { CloudMessageStore, MESSAGES_CHANNEL } from './message-store.js';
import { MethodRelay } from './method-relay.js';
import type { MethodAnswer, SiteChannel } from './site-channel.js';

export interface CloudC2dDeps {
  store: Store;
  audit: AuditLog;
  auth: Authenticator;
  log: Logger;
  registry: Registry;
}

export interface InvokeRequest {
  site: string;
  device: string;
  method: string;
  payload: unknown;
  responseTimeoutMs: number;
  connectTimeoutMs: number;
}

export class CloudC2d {
  readonly messages: CloudMessageStore;
  readonly channels: ChannelServer;
  private readonly relay: MethodRelay | undefined;
  private readonly audits: AuditBatch;
  /** Calls waiting for their site's channel (connectTimeoutMs). */
  private readonly waiters = new KeyedWaiters((site) => this.channels.get(site));
  private readonly inflight = new Map<string, number>();
  private readonly log: Logger;
  private sweepTimer: NodeJS.Timeout | undefined;
  private offBus: (() => void) | undefined;
  private readonly mCalls;
  private readonly mLatency;

  constructor(
    readonly cfg: CloudC2dConfig,
    private readonly deps: CloudC2dDeps,
  ) {
    this.log = deps.log.child({ part: 'c2d' });
    this.messages = new CloudMessageStore(deps.store, cfg.maxMessagesPerDevice);
    this.audits = new AuditBatch(deps.store, deps.audit);
    this.channels = new ChannelServer({
      auth: deps.auth,
      messages: this.messages,
      log: this.log,
      registry: deps.registry,
      pingIntervalMs: cfg.pingIntervalMs,
      onChange: (site, ch) => this.onChannel(site, ch),
    });
    this.relay =
      deps.store.kind === 'postgres'
        ? new MethodRelay(
            deps.store,
            (s) => this.channels.get(s),
            () => [...this.channels.channels.keys()],
            this.log,
          )
        : undefined;
    this.mCalls = counter(deps.registry, 'edgetwin_cloud_methods_total', 'Direct-method calls answered by the API, by result', ['result']);
    this.mLatency = histogram(
      deps.registry,
      'edgetwin_cloud_method_seconds',
      'Direct-method round trip seen by the cloud (channel, collector, device and back)',
      ['path'],
      [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300],
    );
  }

  /** Takes the channel's WebSocket upgrades on the API's HTTP server. */
  attach(server: Server): void {
    this.channels.attach(server);
  }

  start(): void {
    this.offBus = this.deps.store.bus.on(MESSAGES_CHANNEL, () => this.pushAll());
    this.relay?.start();
    this.sweepTimer = setInterval(() => void this.sweep(), this.cfg.sweepIntervalMs);
    this.sweepTimer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.sweepTimer);
    this.offBus?.();
    this.waiters.wakeAll();
    await this.relay?.stop();
    await this.channels.close();
  }

  /**
   * Calls a method on a device of `site` and answers the device's `{status, payload}`. Rejects with
   * EDGETWIN_ERR_DEVICE_NOT_ONLINE (404), _METHOD_TIMEOUT (504), _GATEWAY (502) or _RATE_LIMITED (429).
   */
  async invoke(req: InvokeRequest): Promise<MethodAnswer> {
    const started = performance.now();
    const n = this.inflight.get(req.site) ?? 0;
    if (n >= this.cfg.maxPendingMethodsPerSite) {
      this.mCalls.inc({ result: ErrorCodes.RATE_LIMITED });
      throw new EdgetwinError(ErrorCodes.RATE_LIMITED, `site ${req.site} has ${n} method calls in flight (c2d.maxPendingMethodsPerSite)`);
    }
    this.inflight.set(req.site, n + 1);
    let path = 'local';
    try {
      const call = {
        id: randomUUID(),
        device: req.device,
        method: req.method,
        payload: req.payload,
        responseTimeoutMs: req.responseTimeoutMs,
        connectTimeoutMs: req.connectTimeoutMs,
      };
      let ch = this.channels.get(req.site);
      if (!ch && this.relay && (req.connectTimeoutMs > 0 || (await this.relay.held(req.site)))) {
        path = 'relay';
        return await this.relay.call(req.site, call);
      }
      if (!ch && req.connectTimeoutMs > 0) {
        const t0 = Date.now();
        ch = await this.waiters.wait(req.site, req.connectTimeoutMs);
        call.connectTimeoutMs = Math.max(0, req.connectTimeoutMs - (Date.now() - t0));
      }
      if (!ch) {
        throw new EdgetwinError(
          ErrorCodes.DEVICE_NOT_ONLINE,
          `device ${req.device} is not online: the collector of site ${req.site} is not connected`,
          {
            details: { site: req.site, device: req.device },
          },
        );
      }
      return await ch.invoke(call);
    } catch (err) {
      this.mCalls.inc({ result: isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL });
      throw err;
    } finally {
      const left = (this.inflight.get(req.site) ?? 1) - 1;
      if (left > 0) this.inflight.set(req.site, left);
      else this.inflight.delete(req.site);
      this.mLatency.observe({ path }, (performance.now() - started) / 1000);
    }
  }

  /** Writes an audit entry in the next group commit; resolves once it is committed (audit-batch.ts). */
  audit(who: Principal, action: string, target: { device: string; site: string }, detail: unknown): Promise<void> {
    return this.audits.record(who, action, target, detail);
  }

  /** Counts an answered call (the route calls it once the answer is sent). */
  answered(): void {
    this.mCalls.inc({ result: 'answered' });
  }

  private onChannel(site: string, ch: SiteChannel | undefined): void {
    void this.relay
      ?.holding(site, ch !== undefined)
      .catch((err: unknown) => this.log.warn({ site, err: String(err) }, 'method relay: presence not written'));
    if (!ch) return;
    this.waiters.wake(site);
    this.push(ch);
  }

  private pushAll(): void {
    for (const ch of this.channels.channels.values()) this.push(ch);
  }

  private push(ch: SiteChannel): void {
    ch.pushMessages().catch((err: unknown) =>
      this.log.warn({ site: ch.site, err: String(err) }, 'pending messages not sent (retried at the next sweep)'),
    );
  }

  /** Expires what never reached its site, and re-reads pending messages in case a wake-up was lost. */
  private async sweep(): Promise<void> {
    try {
      if (!(await this.messages.anyPending())) return;
      const expired = await this.messages.expirePending();
      if (expired > 0) this.log.info({ expired }, 'device-bound messages expired before reaching their site');
      this.pushAll();
    } catch (err) {
      this.log.warn({ err: String(err) }, 'device-bound message sweep failed');
    }
  }
}
