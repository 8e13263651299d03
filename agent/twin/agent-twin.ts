/**
 * AgentTwin: keeps the agent in step with its device twin. Desired properties are applied live by
 * appliers (desired-appliers.ts); the last applied desired document is kept on disk so a restart
 * starts with it even before the collector is reachable; at every connect the full twin is read
 * again (GET), so a change made while the agent was offline or stopped is never missed. Reported
 * properties (what is applied, versions, outbox depth, health) are sent as the smallest patch
 * against what the collector already holds, once after each connect and desired change, and then
 * every reportIntervalMs.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { Backoff } from '../../common/backoff.js';
import Type, { type Static } from 'typebox';
import { configDefaults, isPlainObject, Section } from '../../common/config.js';
import { ErrorCodes, errorMessage, isEdgetwinError, storeErrorCode } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { diffPatch, jsonEqual, mergePatch, type JsonObject } from '../../common/merge-patch.js';
import { counter, gauge, type Registry } from '../../common/metrics.js';
import { WIRE_VERSION } from '../../common/wire/record.js';
import { twinKey } from '../../common/wire/twin-protocol.js';
import type { Scorer } from '../types.js';
import { samplingIntervalApplier, sourcesApplier, type DesiredApplier, type SourceControl } from './desired-appliers.js';
import { IotHubTwinClient } from './iothub-twin-client.js';
import { EDGETWIN_VERSION } from '../../common/version.js';

export const agentTwinConfigSchema = Section({
  enabled: Type.Boolean({ default: true }),
  /** A twin request without a reply after this long is retried at the next sync. */
  requestTimeoutMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 10_000 }),
  /** Reported properties (outbox depth, health) are refreshed this often; changes of desired are reported at once. */
  reportIntervalMs: Type.Integer({ minimum: 100, maximum: 86_400_000, default: 60_000 }),
  /** The last applied desired document; defaults to <stateDir>/twin-desired.json. */
  path: Type.Optional(Type.String({ minLength: 1 })),
});
export type AgentTwinConfig = Static<typeof agentTwinConfigSchema>;
export const agentTwinDefaults: AgentTwinConfig = configDefaults(agentTwinConfigSchema);

/** What the twin needs from the agent (the Agent class provides it). */
export interface TwinHost extends SourceControl {
  readonly cfg: { deviceId: string; stateDir: string };
  readonly log: Logger;
  readonly registry: Registry;
  readonly uplink: { readonly mqttClient: MqttClient | undefined };
  readonly outbox: { depth(): { rows: number; bytes: number } };
  health(): { ok: boolean; epoch: number; sourceErrors: Record<string, string> };
}

export const AGENT_VERSION = EDGETWIN_VERSION;

/** Keys built from names (sources, metrics) must follow IoT Hub's property-name rules. */
function sanitizeKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sanitizeKeys);
  if (!isPlainObject(v)) return v;
  return Object.fromEntries(
    Object.entries(v)
      .filter(([, x]) => x !== undefined)
      .map(([k, x]) => [twinKey(k), sanitizeKeys(x)]),
  );
}

export class AgentTwin {
  private readonly client: IotHubTwinClient;
  private readonly appliers = new Map<string, DesiredApplier>();
  private readonly reporters = new Map<string, () => unknown>();
  /** The full desired document last received, and its $version. */
  private desired: JsonObject = {};
  private desiredVersion = 0;
  /** Per key: the desired value that is in effect, and what its applier reported. */
  private readonly inEffect = new Map<string, unknown>();
  private readonly applied: JsonObject = {};
  private readonly errors: JsonObject = {};
  /** The reported document as the collector holds it; unknown until a GET after each connect. */
  private reportedBase: JsonObject | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private reporting = false;
  private reportAgain = false;
  private timer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Between failed syncs on one connection (e.g. a collector without twin support refusing the subscription). */
  private readonly retry = new Backoff({ initialMs: 1000, maxMs: 60_000 });
  private syncFailures = 0;
  private stopped = false;
  private readonly path: string;
  private readonly log: Logger;
  private readonly mApplied;
  private readonly mReported;
  private readonly mVersion;

  constructor(
    private readonly host: TwinHost,
    private readonly cfg: AgentTwinConfig,
    private readonly scorer?: Scorer,
  ) {
    this.log = host.log.child({ part: 'twin' });
    this.path = cfg.path ?? join(host.cfg.stateDir, 'twin-desired.json');
    this.client = new IotHubTwinClient(
      { requestTimeoutMs: cfg.requestTimeoutMs, log: this.log },
      { onConnect: () => this.sync(), onDesiredPatch: (patch, version) => this.onDesiredPatch(patch, version) },
    );
    const r = host.registry;
    this.mApplied = counter(r, 'edgetwin_twin_desired_applied_total', 'Desired-property values applied, by result', ['result']);
    this.mReported = counter(r, 'edgetwin_twin_reported_patches_total', 'Reported-property patches sent, by result', ['result']);
    this.mVersion = gauge(r, 'edgetwin_twin_desired_version', 'The desired $version in effect');
    this.use(samplingIntervalApplier(host));
    this.use(sourcesApplier(host));
  }

  /** Registers the applier of one desired key; the current desired value is applied to it at once. */
  use(applier: DesiredApplier): void {
    this.appliers.set(applier.key, applier);
    this.inEffect.delete(applier.key);
    delete this.errors[applier.key];
    if (this.timer && !this.stopped) {
      this.enqueue(() => this.applyDoc(this.desired, this.desiredVersion, 'applier')).then(
        () => this.report(),
        (err) => this.log.warn({ key: applier.key, err }, 'applying the current desired state failed'),
      );
    }
  }

  /** Adds a reported section (`reported.<key>`), read at every report. */
  addReporter(key: string, read: () => unknown): void {
    this.reporters.set(key, read);
  }

  /** The desired document and version in effect. */
  get state(): { desired: JsonObject; version: number; applied: JsonObject; errors: JsonObject } {
    return { desired: this.desired, version: this.desiredVersion, applied: { ...this.applied }, errors: { ...this.errors } };
  }

  /**
   * Applies the desired state kept from the last run (before the agent's sources start), then
   * follows the uplink's connection. Call after the uplink has started.
   */
  async start(): Promise<void> {
    const kept = this.load();
    await this.enqueue(() => this.applyDoc(kept?.desired ?? {}, kept?.version ?? 0, 'kept'));
    this.timer = setInterval(() => void this.report(), this.cfg.reportIntervalMs);
    const c = this.host.uplink.mqttClient;
    if (c) this.client.attach(c);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.retryTimer);
    await this.queue.catch(() => undefined);
    this.client.detach();
  }

  private enqueue<T>(task: () => Promise<T> | T): Promise<T> {
    // Serialised: desired documents are applied in the order they arrive, never two at once.
    const run = this.queue.then(task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** At every connect: subscribe, read the full twin, apply it, report. Retried while connected. */
  private sync(): void {
    clearTimeout(this.retryTimer);
    this.reportedBase = undefined;
    void this.enqueue(async () => {
      await this.client.subscribe();
      const twin = await this.client.get();
      this.reportedBase = twin.reported;
      // Version 0 means the collector has no desired state for us yet (a new or rebuilt collector
      // whose feed has not caught up): keep what we have rather than fall back to defaults.
      if (twin.desiredVersion === 0 && this.desiredVersion > 0) return;
      await this.applyDoc(twin.desired, twin.desiredVersion, 'get');
    }).then(
      () => {
        this.retry.reset();
        this.syncFailures = 0;
        return this.report();
      },
      (err) => {
        if (this.stopped) return;
        // A collector without twin support refuses every attempt: say so once, then quietly back off.
        const level = this.syncFailures++ === 0 ? 'warn' : 'debug';
        this.log[level]({ code: isEdgetwinError(err) ? err.code : ErrorCodes.TWIN, err }, 'twin sync failed; retrying with backoff');
        this.retryLater();
      },
    );
  }

  private retryLater(): void {
    clearTimeout(this.retryTimer);
    if (this.client.connected && !this.stopped) this.retryTimer = setTimeout(() => this.sync(), this.retry.next());
  }

  private onDesiredPatch(patch: JsonObject, version: number): void {
    void this.enqueue(async () => {
      if (version <= this.desiredVersion) return; // already have it (a GET raced the patch)
      if (version !== this.desiredVersion + 1) {
        // Versions skipped: the patch is relative to a document we do not have. Read it whole.
        const twin = await this.client.get();
        return this.applyDoc(twin.desired, twin.desiredVersion, 'get');
      }
      return this.applyDoc(mergePatch(this.desired, patch) as JsonObject, version, 'patch');
    }).then(
      () => this.report(),
      (err) => {
        if (this.stopped) return;
        this.log.warn({ code: isEdgetwinError(err) ? err.code : ErrorCodes.TWIN, err }, 'desired patch not applied; re-syncing');
        this.retryLater();
      },
    );
  }

  /** Runs each applier whose desired value changed; keys without an applier are reported as errors. */
  private async applyDoc(doc: JsonObject, version: number, from: 'kept' | 'get' | 'patch' | 'applier'): Promise<void> {
    const first = from === 'kept';
    for (const [key, applier] of this.appliers) {
      const value = doc[key];
      if (!first && this.inEffect.has(key) && jsonEqual(this.inEffect.get(key), value)) continue;
      try {
        const result = await applier.apply(value);
        this.inEffect.set(key, value);
        if (result === undefined) delete this.applied[key];
        else this.applied[key] = result;
        delete this.errors[key];
        this.mApplied.inc({ result: 'ok' });
      } catch (err) {
        const code = isEdgetwinError(err) ? err.code : ErrorCodes.CONFIG;
        this.errors[key] = { code, message: errorMessage(err) };
        this.mApplied.inc({ result: 'refused' });
        this.log.warn({ key, code, err }, 'desired value refused; previous setting kept');
      }
    }
    for (const key of Object.keys(this.errors)) if (!this.appliers.has(key) && !(key in doc)) delete this.errors[key];
    for (const key of Object.keys(doc)) {
      if (!this.appliers.has(key))
        this.errors[key] = { code: ErrorCodes.CONFIG, message: `no part of this agent applies desired "${key}"` };
    }
    const changed = version !== this.desiredVersion || !jsonEqual(doc, this.desired);
    this.desired = doc;
    this.desiredVersion = version;
    this.mVersion.set(version);
    if (changed && !first) {
      this.log.info({ version, from, applied: this.applied, errors: Object.keys(this.errors) }, 'desired properties applied');
      this.keep();
    }
  }

  /** The reported document this agent wants the collector to hold. */
  snapshot(): JsonObject {
    const h = this.host.health();
    const doc: JsonObject = {
      applied: { desiredVersion: this.desiredVersion, ...this.applied },
      errors: { ...this.errors },
      versions: {
        agent: AGENT_VERSION,
        wire: WIRE_VERSION,
        ...(this.scorer ? (this.scorer.versions?.() ?? { model: this.scorer.modelVersion }) : {}),
      },
      outbox: this.host.outbox.depth(),
      health: { ok: h.ok, epoch: h.epoch, sourceErrors: h.sourceErrors },
    };
    for (const [key, read] of this.reporters) {
      try {
        doc[key] = read();
      } catch (err) {
        this.log.warn({ key, err }, 'reporter failed');
      }
    }
    return sanitizeKeys(doc) as JsonObject;
  }

  /** Sends what changed since the collector's copy; one patch in flight at a time. */
  async report(): Promise<void> {
    if (this.stopped || !this.client.connected || this.reportedBase === undefined) return;
    if (this.reporting) {
      this.reportAgain = true;
      return;
    }
    this.reporting = true;
    try {
      do {
        this.reportAgain = false;
        const base: JsonObject | undefined = this.reportedBase;
        if (base === undefined) break;
        const patch = diffPatch(base, this.snapshot());
        if (Object.keys(patch).length === 0) break;
        await this.client.patchReported(patch);
        this.mReported.inc({ result: 'ok' });
        if (this.reportedBase === base) this.reportedBase = mergePatch(base, patch) as JsonObject;
      } while (this.reportAgain);
    } catch (err) {
      this.mReported.inc({ result: 'error' });
      this.log.warn({ code: isEdgetwinError(err) ? err.code : ErrorCodes.TWIN, err }, 'reported patch failed; sent again later');
    } finally {
      this.reporting = false;
    }
  }

  private load(): { desired: JsonObject; version: number } | undefined {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch {
      return undefined;
    }
    try {
      const kept = JSON.parse(text) as { desired?: unknown; version?: unknown };
      if (isPlainObject(kept.desired) && typeof kept.version === 'number') return { desired: kept.desired, version: kept.version };
      throw new Error('unexpected shape');
    } catch (err) {
      // A damaged file only costs the offline start-up state: the next GET brings the desired state back.
      this.log.warn({ code: ErrorCodes.STORE_CORRUPT, path: this.path, err }, 'kept desired state unreadable: ignored');
      return undefined;
    }
  }

  /** Writes the desired state atomically (temp file, fsync, rename). */
  private keep(): void {
    const tmp = `${this.path}.tmp`;
    try {
      mkdirSync(dirname(this.path), { recursive: true });
      const fd = openSync(tmp, 'w', 0o600);
      try {
        writeSync(fd, JSON.stringify({ version: this.desiredVersion, desired: this.desired }));
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.path);
    } catch (err) {
      this.log.warn({ code: storeErrorCode(err), path: this.path, err }, 'could not keep the desired state on disk');
    }
  }
}
