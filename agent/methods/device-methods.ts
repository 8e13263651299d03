/**
 * DeviceMethods: IoT Hub direct methods on the agent's existing mqtt.js connection. It subscribes
 * to `$iothub/methods/POST/#` at every connect (a collector restart loses the broker's copy of a
 * persistent session), runs the handler registered for the method, and answers on
 * `$iothub/methods/res/{status}/?$rid=…` (QoS 0, as IoT Hub's own SDKs do: the answer is the
 * acknowledgement). A method nobody registered answers 404 with the list of known ones; a handler
 * that throws answers its error's status (EdgetwinError) or 500, never crashes the agent.
 */
import type { MqttClient } from 'mqtt';
import { ErrorCodes, errorMessage, isEdgetwinError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { counter, type Registry } from '../../common/metrics.js';
import { METHOD_MAX_PAYLOAD_BYTES, methodErrorBody, methodTopics, parseMethodTopic } from '../../common/wire/c2d-protocol.js';

export interface MethodReply {
  status: number;
  payload?: unknown;
}

/** A method handler: its result is answered 200, or return `{status, payload}` to choose the status. */
export type MethodHandler = (payload: unknown) => Promise<unknown> | unknown;

const REPLY = Symbol('edgetwin.methodReply');

/** Marks a handler's result as a full reply with its own status. */
export function reply(status: number, payload?: unknown): MethodReply & { [REPLY]: true } {
  return { status, payload, [REPLY]: true };
}

export class DeviceMethods {
  private readonly handlers = new Map<string, MethodHandler>();
  private client: MqttClient | undefined;
  private readonly mCalls;
  private readonly onConnect = (): void => this.subscribe();
  private readonly onMessage = (topic: string, payload: Buffer): void => {
    if (topic.startsWith(methodTopics.prefix)) void this.handle(topic, payload);
  };

  constructor(
    private readonly log: Logger,
    registry: Registry,
  ) {
    this.mCalls = counter(registry, 'edgetwin_agent_methods_total', 'Direct-method requests answered, by method and status', [
      'method',
      'status',
    ]);
  }

  /** Registers (or replaces) the handler of one method. */
  register(name: string, handler: MethodHandler): void {
    this.handlers.set(name, handler);
  }

  get names(): string[] {
    return [...this.handlers.keys()].sort();
  }

  /** Starts serving on an mqtt.js client (the uplink's); subscribes now if it is already connected. */
  attach(client: MqttClient): void {
    this.detach();
    this.client = client;
    client.on('connect', this.onConnect);
    client.on('message', this.onMessage);
    if (client.connected) this.subscribe();
  }

  detach(): void {
    this.client?.off('connect', this.onConnect);
    this.client?.off('message', this.onMessage);
    this.client = undefined;
  }

  /** Runs a method as a request from the cloud would (also what the tests and the admin tools call). */
  async call(method: string, payload: unknown): Promise<MethodReply> {
    const h = this.handlers.get(method);
    if (!h) {
      return {
        status: 404,
        payload: methodErrorBody(ErrorCodes.NOT_FOUND, `this agent has no method "${method}"`, { methods: this.names }),
      };
    }
    try {
      const out = await h(payload);
      if (typeof out === 'object' && out !== null && REPLY in out) {
        const r = out as unknown as MethodReply;
        return { status: r.status, payload: r.payload };
      }
      return { status: 200, payload: out };
    } catch (err) {
      const status = isEdgetwinError(err) ? err.status : 500;
      const code = isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL;
      if (status >= 500) this.log.warn({ method, code, err }, 'method handler failed');
      return { status, payload: methodErrorBody(code, errorMessage(err)) };
    }
  }

  private subscribe(): void {
    this.client?.subscribe(methodTopics.requests, { qos: 0 }, (err, granted) => {
      if (err || granted?.some((g) => g.qos === 128)) {
        this.log.warn(
          { err: err ? errorMessage(err) : 'SUBACK 0x80' },
          'method subscription refused: direct methods will not reach this agent',
        );
      }
    });
  }

  private async handle(topic: string, raw: Buffer): Promise<void> {
    const t = parseMethodTopic(topic);
    if (t.kind !== 'request' || t.rid === undefined) return;
    const rid = t.rid;
    let r: MethodReply;
    if (raw.length > METHOD_MAX_PAYLOAD_BYTES) {
      r = { status: 413, payload: methodErrorBody(ErrorCodes.PAYLOAD_TOO_LARGE, `request is ${raw.length} bytes`) };
    } else {
      let payload: unknown;
      let ok = true;
      try {
        payload = raw.length === 0 ? null : (JSON.parse(raw.toString('utf8')) as unknown);
      } catch {
        ok = false;
      }
      r = ok
        ? await this.call(t.method, payload)
        : { status: 400, payload: methodErrorBody(ErrorCodes.BAD_PAYLOAD, 'request payload is not JSON') };
    }
    this.mCalls.inc({ method: this.handlers.has(t.method) ? t.method : 'unknown', status: String(r.status) });
    const c = this.client;
    if (!c?.connected) return; // the request died with the connection; the caller gets 502 from the collector
    c.publish(methodTopics.response(r.status, rid), JSON.stringify(r.payload ?? null), { qos: 0 }, (err) => {
      if (err) this.log.debug({ rid, err: errorMessage(err) }, 'method answer not sent');
    });
  }
}
