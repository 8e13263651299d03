/**
 * The collector's model cache. A version is fetched from the cloud once — when a promotion for
 * this site names it (polled every `models.pollMs`) or when a device first asks for it — checked
 * against its entry's sha256 and only then stored, so devices keep getting models while the cloud
 * is unreachable. Files are checked again at start-up; a damaged one is dropped and fetched anew.
 *
 * Devices name the versions they ask for, so a device could make the collector fetch without end
 * (random names): each fetch costs a connection of the cloud client the ingest sink shares and a
 * request against the site token's rate limit, so one device could slow its whole site's uplink.
 * Hence `request()`, the device's way in: at most `deviceFetches` versions are fetched for devices
 * at once (more: EDGETWIN_ERR_RATE_LIMITED, the device retries later), and a version the cloud does
 * not have is answered from memory for `notFoundTtlMs`. Promotions (pollOnce) are not limited.
 */
import { Backoff } from '../../common/backoff.js';
import { EdgetwinError, ErrorCodes, isEdgetwinError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { counter, gauge, type Registry } from '../../common/metrics.js';
import { ModelFiles, type StoredModel } from '../../common/models/files.js';
import type { CloudModelsClient } from './cloud-models-client.js';

export class ModelCache {
  readonly files: ModelFiles;
  private readonly inflight = new Map<string, Promise<StoredModel>>();
  /** Fetches started by device requests, in flight. */
  private deviceFetches = 0;
  /** Versions the cloud answered 404 for, with when: answered NOT_FOUND from here until notFoundTtlMs passed. */
  private readonly missing = new Map<string, number>();
  private readonly backoff: Backoff;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private failingSince = 0;
  private readonly mFetches;
  private readonly mCached;

  constructor(
    dir: string,
    private readonly cloud: CloudModelsClient | undefined,
    private readonly opts: {
      siteId: string;
      pollMs: number;
      maxBytes: number;
      backoff: { initialMs: number; maxMs: number };
      /** Most versions fetched for devices at once (models.deviceFetches). */
      deviceFetches?: number;
      /** How long a version the cloud does not have is answered NOT_FOUND without asking again (models.notFoundTtlMs). */
      notFoundTtlMs?: number;
      log: Logger;
      registry: Registry;
      /** Clock (tests). */
      now?: () => number;
    },
  ) {
    this.files = new ModelFiles(dir);
    this.backoff = new Backoff(opts.backoff);
    this.mFetches = counter(opts.registry, 'edgetwin_models_fetches_total', 'Model versions fetched from the cloud, by result', ['result']);
    this.mCached = gauge(opts.registry, 'edgetwin_models_cached', 'Model versions in the cache');
  }

  /** 'off' without a cloud URL; 'failing' while polls fail. */
  get poll(): 'ok' | 'failing' | 'off' {
    return !this.cloud ? 'off' : this.failingSince ? 'failing' : 'ok';
  }

  start(): void {
    let kept = 0;
    for (const s of this.files.list()) {
      if (this.files.verify(s.entry.name, s.entry.version)) kept++;
      else {
        this.opts.log.warn(
          { code: ErrorCodes.STORE_CORRUPT, model: s.entry.version },
          'cached model does not match its sha256: dropped, fetched again when needed',
        );
        this.files.remove(s.entry.name, s.entry.version);
      }
    }
    this.mCached.set(kept);
    if (this.cloud) this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await Promise.allSettled([...this.inflight.values()]);
    await this.cloud?.close();
  }

  /**
   * A device's request for a version: ensure(), within the device bounds (see the top of the file).
   * Refuses with NOT_FOUND (the cloud recently had no such version) or RATE_LIMITED (enough fetches
   * for devices in flight) without asking the cloud.
   */
  request(name: string, version: string): Promise<StoredModel> {
    const have = this.files.get(name, version);
    if (have) return Promise.resolve(have);
    const key = `${name}/${version}`;
    const joined = this.inflight.get(key);
    if (joined) return joined;
    const now = this.opts.now?.() ?? Date.now();
    const missingAt = this.missing.get(key);
    if (missingAt !== undefined && now - missingAt < (this.opts.notFoundTtlMs ?? 60_000)) {
      this.mFetches.inc({ result: 'not_found_cached' });
      return Promise.reject(new EdgetwinError(ErrorCodes.NOT_FOUND, `model ${name} ${version} is not in the cloud registry`));
    }
    const max = this.opts.deviceFetches ?? 2;
    if (this.deviceFetches >= max) {
      this.mFetches.inc({ result: 'refused_busy' });
      return Promise.reject(
        new EdgetwinError(ErrorCodes.RATE_LIMITED, `the collector is fetching ${max} other models for devices; ask again later`),
      );
    }
    this.deviceFetches++;
    return this.ensure(name, version).finally(() => this.deviceFetches--);
  }

  /** The stored entry of a version, fetching it from the cloud first when it is not here. */
  ensure(name: string, version: string): Promise<StoredModel> {
    const have = this.files.get(name, version);
    if (have) return Promise.resolve(have);
    const key = `${name}/${version}`;
    let p = this.inflight.get(key);
    if (!p) {
      p = this.fetch(name, version).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  private async fetch(name: string, version: string): Promise<StoredModel> {
    if (!this.cloud || this.stopped)
      throw new EdgetwinError(ErrorCodes.NOT_FOUND, `model ${name} ${version} is not cached and no cloud is configured to fetch it from`);
    try {
      const stored = await this.cloud.entry(name, version);
      if (stored.entry.name !== name || stored.entry.version !== version)
        throw new EdgetwinError(
          ErrorCodes.BAD_PAYLOAD,
          `cloud answered ${stored.entry.name} ${stored.entry.version} for ${name} ${version}`,
        );
      if (stored.entry.bytes > this.opts.maxBytes)
        throw new EdgetwinError(ErrorCodes.PAYLOAD_TOO_LARGE, `model ${version} is ${stored.entry.bytes} bytes, over models.maxBytes`);
      const bytes = await this.cloud.file(name, version, this.opts.maxBytes);
      this.files.put(stored, bytes); // refuses bytes that do not match the entry's sha256
      this.mFetches.inc({ result: 'ok' });
      this.mCached.inc();
      this.opts.log.info({ model: version, bytes: bytes.length }, 'model cached');
      return stored;
    } catch (err) {
      this.mFetches.inc({ result: isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL });
      if (isEdgetwinError(err, ErrorCodes.NOT_FOUND)) this.rememberMissing(`${name}/${version}`);
      throw err;
    }
  }

  private rememberMissing(key: string): void {
    this.missing.delete(key);
    this.missing.set(key, this.opts.now?.() ?? Date.now());
    // Bounded: the oldest entries go first (a Map iterates in insertion order).
    while (this.missing.size > 1024) this.missing.delete(this.missing.keys().next().value!);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.pollOnce().then((ok) => this.schedule(ok ? this.opts.pollMs : this.backoff.next())), ms);
  }

  /** Fetches every promoted version this cache lacks; resolves false when something failed. */
  async pollOnce(): Promise<boolean> {
    try {
      let failed: unknown;
      for (const p of await this.cloud!.promoted(this.opts.siteId)) {
        if (this.stopped) break;
        // One bad version must not keep the others from being cached.
        await this.ensure(p.name, p.version).catch((err: unknown) => (failed ??= err));
      }
      if (failed) throw failed;
      if (this.failingSince) this.opts.log.info('model registry reachable again');
      this.failingSince = 0;
      this.backoff.reset();
      return true;
    } catch (err) {
      if (!this.failingSince) {
        this.failingSince = Date.now();
        this.opts.log.warn(
          { code: isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL, err },
          'model registry poll failed; retrying with backoff',
        );
      }
      return false;
    }
  }
}
