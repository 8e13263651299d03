/**
 * Serves cached models to the site's devices over MQTT, on the connection each device already
 * authenticated: `$edgetwin/models/GET/{name}/{version}/entry` answers the manifest entry (and
 * signature), `…/file?offset=n` one chunk of the file. Replies go to the asking client only
 * (`client.publish`), like twin replies; a device publishing on a reply topic is refused and
 * disconnected. See docs/wire-contract.md, "Model rollout".
 */
import type { Client, PublishPacket } from 'aedes';
import { EdgetwinError, ErrorCodes, errorMessage, isEdgetwinError, type ErrorCode } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { counter, type Registry } from '../../common/metrics.js';
import { modelTopics, parseModelTopic } from '../../common/wire/model-protocol.js';
import { twinErrorBody } from '../../common/wire/twin-protocol.js';
import type { TwinHandler } from '../broker/broker.js';
import type { ModelCache } from './model-cache.js';

const STATUS: Partial<Record<ErrorCode, number>> = {
  [ErrorCodes.BAD_TOPIC]: 400,
  [ErrorCodes.BAD_REQUEST]: 400,
  [ErrorCodes.NOT_FOUND]: 404,
  [ErrorCodes.PAYLOAD_TOO_LARGE]: 413,
  [ErrorCodes.RATE_LIMITED]: 429,
  [ErrorCodes.MODEL]: 502,
  [ErrorCodes.BAD_PAYLOAD]: 502,
};

export class MqttModelHandler implements TwinHandler {
  private readonly mRequests;
  private readonly mBytes;

  constructor(
    private readonly cache: ModelCache,
    private readonly opts: { chunkBytes: number; log: Logger; registry: Registry },
  ) {
    this.mRequests = counter(opts.registry, 'edgetwin_models_requests_total', 'Device model requests answered, by operation and status', [
      'op',
      'status',
    ]);
    this.mBytes = counter(opts.registry, 'edgetwin_models_served_bytes_total', 'Model bytes sent to devices');
  }

  onPublish(device: string, client: Client, packet: PublishPacket, done: (err?: Error | null) => void): void {
    const t = parseModelTopic(packet.topic);
    if (t.kind === 'response') {
      this.mRequests.inc({ op: 'reply', status: '403' });
      this.opts.log.warn({ device, topic: packet.topic, code: ErrorCodes.FORBIDDEN }, 'device published on a model reply topic: refused');
      return done(new EdgetwinError(ErrorCodes.FORBIDDEN, 'devices may not publish model replies'));
    }
    done(null);
    if (t.rid === undefined) {
      this.mRequests.inc({ op: 'unknown', status: '400' });
      this.opts.log.warn({ device, topic: packet.topic, code: ErrorCodes.BAD_TOPIC }, 'model request without $rid dropped');
      return;
    }
    const rid = t.rid;
    if (t.kind === 'unknown')
      return this.fail(client, 'unknown', rid, new EdgetwinError(ErrorCodes.BAD_TOPIC, `unsupported model request: ${packet.topic}`));
    this.cache
      .request(t.name, t.version)
      .then(
        (stored) => {
          if (t.kind === 'entry') {
            this.send(client, modelTopics.response(200, rid), Buffer.from(JSON.stringify(stored)));
            this.mRequests.inc({ op: 'entry', status: '200' });
            return;
          }
          const total = stored.entry.bytes;
          if (t.offset >= total)
            return this.fail(
              client,
              'chunk',
              rid,
              new EdgetwinError(ErrorCodes.BAD_REQUEST, `offset ${t.offset} is past the end (${total} bytes)`),
            );
          const chunk = this.cache.files.readChunk(t.name, t.version, t.offset, this.opts.chunkBytes);
          this.send(client, modelTopics.response(200, rid, { offset: t.offset, total }), chunk);
          this.mRequests.inc({ op: 'chunk', status: '200' });
          this.mBytes.inc(chunk.length);
        },
        (err) => this.fail(client, t.kind, rid, err),
      )
      .catch((err) => this.fail(client, t.kind, rid, err));
  }

  private fail(client: Client, op: string, rid: string, err: unknown): void {
    const code = isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL;
    // The cloud unreachable or failing: the device retries later.
    const status = STATUS[code] ?? 503;
    this.mRequests.inc({ op, status: String(status) });
    this.opts.log.warn({ clientId: client.id, op, code, err }, 'model request failed');
    this.send(client, modelTopics.response(status, rid), Buffer.from(twinErrorBody(code, errorMessage(err))));
  }

  private send(client: Client, topic: string, payload: Buffer): void {
    if (client.closed) return;
    client.publish({ cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false }, (err) => {
      if (err) this.opts.log.debug({ clientId: client.id, err: err.message }, 'model reply not delivered');
    });
  }
}
