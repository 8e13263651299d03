/**
 * Fetches a model from the collector over the agent's own MQTT connection (the uplink's mqtt.js
 * client): the manifest entry first, then the file chunk by chunk, each a request answered on
 * `$edgetwin/models/res/…` and matched by `$rid`. Nothing here trusts the collector: the caller
 * checks the entry against desired `model`, the bytes against the entry's sha256 and, when
 * configured, the entry's signature.
 */
import { randomBytes } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { EdgetwinError, ErrorCodes, type ErrorCode } from '../../common/errors.js';
import { isStoredModel, type StoredModel } from '../../common/models/files.js';
import { modelTopics, parseModelTopic, type DesiredModel } from '../../common/wire/model-protocol.js';

interface Reply {
  status: number;
  offset: number | undefined;
  total: number | undefined;
  body: Buffer;
}

function fetchError(code: ErrorCode, message: string, details: Record<string, unknown> = {}): EdgetwinError {
  return new EdgetwinError(code, message, { details });
}

export class CollectorModelClient {
  private listeningOn: MqttClient | undefined;
  private readonly waiting = new Map<string, (r: Reply) => void>();
  private readonly ridPrefix = `m${randomBytes(3).toString('hex')}`;
  private nextRid = 1;

  constructor(
    private readonly mqttClient: () => MqttClient | undefined,
    private readonly requestTimeoutMs: number,
  ) {}

  /** The entry and the whole file of one version, as the collector serves them (unverified). */
  async fetch(want: DesiredModel, maxBytes: number): Promise<{ stored: StoredModel; bytes: Buffer }> {
    const c = this.mqttClient();
    if (!c?.connected) throw fetchError(ErrorCodes.UPLINK, 'not connected to the collector');
    this.listen(c);
    await this.subscribe(c);
    const res = await this.request(c, (rid) => modelTopics.getEntry(rid, want.name, want.version));
    let stored: unknown;
    try {
      stored = JSON.parse(res.body.toString('utf8'));
    } catch {
      stored = undefined;
    }
    if (!isStoredModel(stored))
      throw fetchError(ErrorCodes.MODEL, `model ${want.version}: the collector's entry is not { entry, signature? }`);
    const size = stored.entry.bytes;
    if (size > maxBytes)
      throw fetchError(ErrorCodes.MODEL, `model ${want.version}: ${size} bytes is over scoring.rollout.maxModelBytes (${maxBytes})`, {
        bytes: size,
      });
    const bytes = Buffer.alloc(size);
    let offset = 0;
    while (offset < size) {
      const at = offset;
      const chunk = await this.request(c, (rid) => modelTopics.getChunk(rid, want.name, want.version, at));
      if (chunk.offset !== at || chunk.total !== size || chunk.body.length === 0 || at + chunk.body.length > size) {
        throw fetchError(
          ErrorCodes.MODEL,
          `model ${want.version}: the collector's file does not match its entry (${chunk.total} bytes, entry says ${size})`,
          { total: chunk.total, bytes: size },
        );
      }
      chunk.body.copy(bytes, at);
      offset += chunk.body.length;
    }
    return { stored, bytes };
  }

  private listen(c: MqttClient): void {
    if (this.listeningOn === c) return;
    this.listeningOn = c;
    c.on('message', (topic: string, payload: Buffer) => {
      if (!topic.startsWith(modelTopics.prefix)) return;
      const t = parseModelTopic(topic);
      if (t.kind !== 'response' || t.rid === undefined) return;
      this.waiting.get(t.rid)?.({ status: t.status, offset: t.offset, total: t.total, body: payload });
    });
  }

  private subscribe(c: MqttClient): Promise<void> {
    return new Promise((resolve, reject) => {
      c.subscribe(modelTopics.responses, { qos: 0 }, (err, granted) => {
        if (err) return reject(fetchError(ErrorCodes.UPLINK, `model subscription failed: ${err.message}`));
        if (granted?.some((g) => g.qos === 128))
          return reject(fetchError(ErrorCodes.UPLINK, 'the collector does not serve models (subscription refused)'));
        resolve();
      });
    });
  }

  /** One request; resolves with a 2xx reply, rejects with the collector's error otherwise. */
  private request(c: MqttClient, topicFor: (rid: string) => string): Promise<Reply> {
    const rid = `${this.ridPrefix}-${this.nextRid++}`;
    return new Promise<Reply>((resolve, reject) => {
      const settle = (err: Error | undefined, r?: Reply): void => {
        clearTimeout(timer);
        c.off('close', onClose);
        this.waiting.delete(rid);
        if (err) reject(err);
        else resolve(r!);
      };
      const timer = setTimeout(
        () => settle(fetchError(ErrorCodes.UPLINK, `no model reply within ${this.requestTimeoutMs} ms`)),
        this.requestTimeoutMs,
      );
      const onClose = (): void => settle(fetchError(ErrorCodes.UPLINK, 'connection to the collector closed during a model download'));
      c.once('close', onClose);
      this.waiting.set(rid, (r) => (r.status >= 200 && r.status < 300 ? settle(undefined, r) : settle(replyError(r))));
      c.publish(topicFor(rid), '', { qos: 0 }, (err) => {
        if (err) settle(fetchError(ErrorCodes.UPLINK, `model request not sent: ${err.message}`));
      });
    });
  }
}

/** The collector's error reply; not found, busy (429: it is fetching other models) and server errors are worth retrying, the rest is about the model. */
function replyError(r: Reply): EdgetwinError {
  let detail = r.body.toString('utf8').slice(0, 300);
  try {
    const e = JSON.parse(detail) as { errorCode?: unknown; message?: unknown };
    detail = `${String(e.errorCode)}: ${String(e.message)}`;
  } catch {
    // not JSON: keep the text
  }
  const transient = r.status === 404 || r.status === 429 || r.status >= 500;
  return fetchError(transient ? ErrorCodes.UPLINK : ErrorCodes.MODEL, `collector answered ${r.status} (${detail})`, { status: r.status });
}
