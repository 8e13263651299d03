/**
 * Delivers the backlog an agent kept under its previous device id (`outbox.onDeviceIdChange:
 * send-as-old`, agent/outbox/device-id.ts): its own outbox file, its own MQTT connection as the old
 * id (same URL, TLS and credential settings as the main uplink), the same MqttUplink. Once the file
 * is empty and nothing is in flight the connection closes and the file is deleted. A restart picks
 * up where it stopped: the file stays until it is empty.
 */
import { rmSync } from 'node:fs';
import type { Logger } from '../../common/log.js';
import { SqliteOutbox } from '../../common/outbox/outbox.js';
import { MqttUplink, type MqttUplinkConfig } from './mqtt-uplink.js';

const CHECK_MS = 1000;

export class OldBacklogUplink {
  private readonly outbox: SqliteOutbox;
  private readonly uplink: MqttUplink;
  private timer: NodeJS.Timeout | undefined;
  private done = false;
  private stopping: Promise<void> | undefined;

  constructor(
    readonly deviceId: string,
    private readonly path: string,
    cfg: MqttUplinkConfig,
    private readonly log: Logger,
  ) {
    this.outbox = new SqliteOutbox({ path, maxBytes: Number.MAX_SAFE_INTEGER, whenFull: 'block', synchronous: 'normal' }, { log });
    // The client id is the device id the collector authenticates: never the main uplink's clientId.
    const { clientId: _mine, ...rest } = cfg;
    this.uplink = new MqttUplink(rest, { deviceId, outbox: this.outbox, log: log.child({ oldDeviceId: deviceId }) });
  }

  /** Readings still to deliver. */
  get rows(): number {
    return this.done ? 0 : this.outbox.depth().rows;
  }

  /** True once everything was delivered and the file removed. */
  get delivered(): boolean {
    return this.done;
  }

  start(): void {
    this.log.info({ oldDeviceId: this.deviceId, readings: this.rows }, 'delivering the backlog of the previous device id');
    this.uplink.start();
    this.timer = setInterval(() => void this.check(), CHECK_MS);
    this.timer.unref();
  }

  private async check(): Promise<void> {
    if (this.done || this.outbox.depth().rows > 0 || this.uplink.inflightBatches > 0) return;
    this.done = true;
    await this.stop();
    for (const s of ['', '-wal', '-shm']) rmSync(this.path + s, { force: true });
    this.log.info({ oldDeviceId: this.deviceId }, 'backlog of the previous device id delivered; its file is removed');
  }

  stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.stopping ??= this.uplink.stop().finally(() => this.outbox.close());
    return this.stopping;
  }
}
