/**
 * Device connection events for cloud-to-device delivery (collector/c2d/): method requests and
 * device-bound messages go to the one connected client of a device, never through aedes' routing,
 * so the deliverer needs to know when a device's client is ready and which PUBACKs it sends.
 */
import type { Aedes, Client } from 'aedes';

export interface DeviceListener {
  /** The device's client is connected with its subscriptions in place, or has just subscribed to more. */
  onReady(device: string, client: Client): void;
  /** The client is gone (disconnected, replaced by a new connection of the same device, dropped). */
  onGone(device: string, client: Client): void;
  /** A PUBACK from the device's client (QoS 1 deliveries the listener wrote itself carry its own packet ids). */
  onPuback(device: string, client: Client, messageId: number): void;
}

type DeviceOf = (client: Client) => string | undefined;

/**
 * Ready = CONNACK sent with a persistent session's subscriptions restored ('clientReady'), or a
 * SUBSCRIBE granted on a live connection ('subscribe'; restored subscriptions arrive before the
 * client is connected and are covered by 'clientReady').
 */
export function followReadiness(aedes: Aedes, deviceOf: DeviceOf, events: DeviceListener): void {
  aedes.on('clientReady', (c) => {
    const device = deviceOf(c);
    if (device !== undefined) events.onReady(device, c);
  });
  aedes.on('subscribe', (_subs, c) => {
    const device = deviceOf(c);
    if (device !== undefined && c.connected) events.onReady(device, c);
  });
}

/**
 * PUBACKs always reach aedes' own parser (the fast path takes only PUBLISHes), which emits each
 * packet; a listener added after aedes' own sees them in order. aedes drops its listeners when the
 * client closes.
 */
export function watchPubacks(client: Client, deviceOf: () => string | undefined, events: DeviceListener): void {
  type Parser = { on(ev: 'packet', fn: (p: { cmd: string; messageId?: number }) => void): void };
  const parser = (client as unknown as { _parser?: Parser })._parser;
  parser?.on('packet', (p) => {
    const device = deviceOf();
    if (p.cmd === 'puback' && device !== undefined && p.messageId !== undefined) events.onPuback(device, client, p.messageId);
  });
}
