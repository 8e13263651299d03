/** What the broker is built from (collector/collector.ts wires these): handlers, spool writer, auth, limits. */
import type { Client, PublishPacket } from 'aedes';
import type { Logger } from '../../common/log.js';
import type { Registry } from '../../common/metrics.js';
import type { TimestampWindow } from '../../common/wire/storable.js';
import type { DeviceSequencer } from '../spool/device-seq.js';
import type { SpoolWriter } from '../spool/spool-writer.js';
import type { DeviceAuthenticator } from './auth.js';
import type { DeviceListener } from './device-events.js';

/**
 * Handles IoT Hub device-twin traffic (`$iothub/twin/...`). Replies must go to the one client
 * (`client.publish`), never through the broker's routing: every device subscribes to the same
 * `$iothub/twin/res/#` topic.
 */
export interface TwinHandler {
  onPublish(device: string, client: Client, packet: PublishPacket, done: (err?: Error | null) => void): void;
  /** A device subscribed to one of the twin topics (e.g. to push desired changes made while it was away). */
  onSubscribe?(device: string, client: Client, topic: string): void;
  /** True for the handler's own replies: the only `$iothub/` packets the broker may forward to a client. */
  isDirect?(packet: PublishPacket): boolean;
}

export interface MqttBrokerDeps {
  auth: DeviceAuthenticator;
  twin?: TwinHandler;
  /** Serves rolled-out models to devices (`$edgetwin/models/…`, collector/model-cache/mqtt-models.ts). */
  models?: TwinHandler;
  /** Direct methods (`$iothub/methods/…`): answers from devices, and the subscription to requests (collector/c2d/). */
  methods?: TwinHandler;
  /** Connection events and PUBACKs for cloud-to-device delivery (collector/c2d/). */
  deviceEvents?: DeviceListener;
  spoolWriter: SpoolWriter;
  log: Logger;
  registry: Registry;
  /** Gives collector-built readings (IoT Hub SDK metric maps) their seq; without it such messages are refused. */
  sequencer?: DeviceSequencer;
  /** Sample times accepted on telemetry (config `timestamps`); unset: any the lake can store. */
  timestamps?: TimestampWindow;
  /** Most distinct metric names one telemetry message may carry (`limits.metricsPerDevice`); unset: no cap. */
  maxMetricsPerMessage?: number;
  /** How often to drop revoked devices and expired SAS tokens (default 500 ms). */
  revocationPollMs?: number;
}
