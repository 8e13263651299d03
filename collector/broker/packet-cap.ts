import type { Client } from 'aedes';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';

interface MqttPacketParser {
  packet: { length: number };
  _parseLength(): boolean;
  _emitError(err: Error): void;
}

/**
 * aedes has no packet size limit: mqtt-packet would buffer a packet of any announced length (up to
 * 256 MiB), before authentication even. This refuses one as soon as its length header is read, and
 * bounds the bytes a client may send before its CONNACK (aedes queues those packets in memory).
 */
export function capPacketSize(client: Client, maxBytes: number): Client {
  const parser = (client as unknown as { _parser?: MqttPacketParser })._parser;
  if (!parser || typeof parser._parseLength !== 'function') return client;
  const parseLength = parser._parseLength;
  const maxBeforeConnack = Math.max(4 * 1024 * 1024, 2 * maxBytes);
  let beforeConnack = 0;
  parser._parseLength = function (this: MqttPacketParser): boolean {
    const ok = parseLength.call(this);
    if (!ok) return ok;
    if (!(client as unknown as { connackSent?: boolean }).connackSent) beforeConnack += this.packet.length;
    if (this.packet.length > maxBytes || beforeConnack > maxBeforeConnack) {
      this._emitError(
        new EdgetwinError(
          ErrorCodes.PAYLOAD_TOO_LARGE,
          `packet of ${this.packet.length} bytes exceeds ${maxBytes}, or ${beforeConnack} bytes before CONNACK`,
        ),
      );
      return false;
    }
    return ok;
  };
  return client;
}
