/**
 * DriftService: evaluates every model version's drift per cohort (a site, or devices sharing a
 * tag) and window, keeps the figures for `GET /v1/models/{name}/{version}/drift`, and feeds the
 * `model_drift` alert signal. One replica evaluates at a time (a store lease); the figures are in
 * the store, so any replica answers the API.
 *
 * Reference of each (stream, quantity): the histograms shipped in the model's manifest entry
 * (`drift.reference`, from its validation data) when it has one; otherwise the cohort's own first
 * `baselineMs` after the version appeared there, frozen once that period is complete (windows
 * inside it are not judged). A stream drifts when D > 0.05 with p < 0.01 (common/drift/compare.ts).
 */
import { Histogram } from '../../common/drift/histogram.js';
import { DRIFT_MAX_P, DRIFT_MIN_KS } from '../../common/drift/compare.js';
import type { Logger } from '../../common/log.js';
import { isPlainObject } from '../../common/config.js';
import type { AnyModelEntry, DriftQuantity } from '../../common/models/manifest.js';
import type { Observation } from '../alerts/signals.js';
import type { PredictionStore } from '../predictions/prediction-store.js';
import type { Lease, Store } from '../store/store.js';
import type { CloudDriftConfig } from './config.js';
import { parseCohort, type DriftStore, type EvaluationRow, type ReferenceRow } from './drift-store.js';
import { evaluateStreams, MergedStreams } from './evaluate.js';

export const DRIFT_RUNBOOK = 'docs/runbooks/model-drift.md';

type RefLookup = (stream: string, quantity: DriftQuantity) => Histogram | undefined;

interface CohortScope {
  cohort: string;
  site: string | null;
  devices: string[] | null;
}

export class DriftService {
  private timer: NodeJS.Timeout | undefined;
  private lease: Lease | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly store: Store,
    private readonly drift: DriftStore,
    private readonly cfg: CloudDriftConfig,
    private readonly opts: { log?: Logger; now?: () => number; onDrift?: () => void; predictions?: PredictionStore } = {},
  ) {}

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  start(): void {
    if (!this.cfg.enabled) return;
    this.lease = this.store.lease('drift-evaluator', this.cfg.evaluateIntervalMs);
    this.timer = setInterval(() => void this.tick(), this.cfg.evaluateIntervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
    await this.lease?.release();
  }

  private async tick(): Promise<void> {
    if (this.running || (this.lease && !this.lease.held)) return;
    this.running = this.evaluateAll()
      .then(async () => {
        const now = this.now();
        // Retention of both derived tables rides the same (leased) timer.
        await this.drift.prune(now - this.cfg.retentionDays * 86_400_000);
        await this.opts.predictions?.prune(now - this.cfg.predictionRetentionDays * 86_400_000);
      })
      .catch((err) => this.opts.log?.error({ err }, 'drift evaluation failed'))
      .finally(() => (this.running = undefined));
    await this.running;
  }

  /** The window containing `t`. */
  window(t: number): { start: number; end: number } {
    const start = Math.floor(t / this.cfg.windowMs) * this.cfg.windowMs;
    return { start, end: start + this.cfg.windowMs };
  }

  /** Evaluates the current and the previous window of every model version with histograms in them. */
  async evaluateAll(now = this.now()): Promise<EvaluationRow[]> {
    const cur = this.window(now);
    const active = await this.drift.active(cur.start - this.cfg.windowMs, cur.end);
    const out: EvaluationRow[] = [];
    for (const model of new Set(active.map((a) => a.model))) out.push(...(await this.evaluateModel(model, now)));
    if (out.some((e) => e.drift)) this.opts.onDrift?.();
    return out;
  }

  /** Evaluates one model version in every cohort, for the current and previous windows; stores and answers the figures. */
  async evaluateModel(model: string, now = this.now()): Promise<EvaluationRow[]> {
    const cur = this.window(now);
    const windows = [{ start: cur.start - this.cfg.windowMs, end: cur.start }, cur];
    const manifestRef = await this.manifestReference(model);
    const out: EvaluationRow[] = [];
    for (const scope of await this.cohorts(model, windows[0]!.start, cur.end)) {
      const ref = await this.reference(model, scope, manifestRef, now);
      for (const w of windows) {
        const rows = await this.drift.histograms(model, scope.devices, scope.site, w.start, Math.min(w.end, now));
        if (rows.length === 0) continue;
        const merged = new MergedStreams();
        for (const r of rows) merged.add(r);
        const inBaseline = ref.baselineUntil !== undefined && w.start < ref.baselineUntil;
        for (const s of evaluateStreams(merged, ref.lookup)) {
          const judged = !inBaseline || ref.fromManifest.has(`${s.stream}\u0000${s.quantity}`);
          out.push({
            ...s,
            ...(judged ? {} : { drift: false, reason: 'baseline period (reference being collected)' }),
            model,
            cohort: scope.cohort,
            windowStart: w.start,
            windowEnd: w.end,
            site: scope.site,
          });
        }
      }
    }
    await this.drift.saveEvaluations(out, now);
    return out;
  }

  /** Sites the version was seen in, and for each configured tag key the devices sharing a value. */
  private async cohorts(model: string, from: number, to: number): Promise<CohortScope[]> {
    const active = await this.drift.active(from, to);
    const out: CohortScope[] = active
      .filter((a) => a.model === model)
      .map((a) => ({ cohort: `site:${a.site}`, site: a.site, devices: null }));
    if (this.cfg.cohortTags.length === 0) return out;
    const devices = await this.store.all<{ device: string }>(
      'SELECT DISTINCT device FROM drift_histograms WHERE model = ? AND to_ts > ? AND to_ts <= ?',
      [model, from, to],
    );
    const byTag = new Map<string, string[]>();
    for (let i = 0; i < devices.length; i += 500) {
      const part = devices.slice(i, i + 500).map((d) => d.device);
      const twins = await this.store.all<{ device: string; tags: string }>(
        `SELECT device, tags FROM twins WHERE device IN (${part.map(() => '?').join(', ')})`,
        part,
      );
      for (const t of twins) {
        let tags: unknown;
        try {
          tags = JSON.parse(t.tags);
        } catch {
          continue;
        }
        if (!isPlainObject(tags)) continue;
        for (const key of this.cfg.cohortTags) {
          const v = tags[key];
          if (typeof v !== 'string') continue;
          const cohort = `tag:${key}=${v}`;
          byTag.set(cohort, [...(byTag.get(cohort) ?? []), t.device]);
        }
      }
    }
    for (const [cohort, devs] of byTag) out.push({ cohort, site: null, devices: devs });
    return out;
  }

  /** The version's manifest entry's reference histograms, when the registry has the version and the entry ships them. */
  private async manifestReference(model: string): Promise<{ source: string; refs: Map<string, Histogram> } | undefined> {
    const row = await this.store.get<{ entry: string }>('SELECT entry FROM models WHERE version = ? ORDER BY uploaded_at DESC LIMIT 1', [
      model,
    ]);
    if (!row) return undefined;
    const entry = JSON.parse(row.entry) as AnyModelEntry;
    const ref = entry.drift?.reference;
    if (!ref) return undefined;
    const refs = new Map<string, Histogram>();
    for (const [stream, qs] of Object.entries(ref.streams))
      for (const [q, h] of Object.entries(qs)) {
        try {
          refs.set(`${stream}\u0000${q}`, Histogram.unpack(h));
        } catch {
          // a damaged reference histogram is not used (the registry checked the schema, not the cells)
        }
      }
    return { source: `manifest: ${ref.source}`, refs };
  }

  /** The lookup of a cohort's reference: the manifest's where it has one, else the cohort's frozen baseline (made once complete). */
  private async reference(
    model: string,
    scope: CohortScope,
    manifest: { source: string; refs: Map<string, Histogram> } | undefined,
    now: number,
  ): Promise<{ lookup: RefLookup; baselineUntil: number | undefined; fromManifest: Set<string>; sources: string[] }> {
    let baseline = await this.drift.references(model, scope.cohort);
    let baselineUntil: number | undefined;
    if (baseline.length === 0) {
      const first = await this.drift.firstSeen(model, scope.devices, scope.site);
      if (first !== undefined) {
        baselineUntil = first + this.cfg.baselineMs;
        if (now >= baselineUntil) {
          const merged = new MergedStreams();
          for (const r of await this.drift.histograms(model, scope.devices, scope.site, first - 1, baselineUntil)) merged.add(r);
          const source = `baseline: the cohort's histograms from ${new Date(first).toISOString()} to ${new Date(baselineUntil).toISOString()}`;
          const refs: ReferenceRow[] = [...merged.streams.values()].map((s) => ({
            stream: s.stream,
            quantity: s.quantity,
            hist: s.hist.pack(),
            source,
            from: first,
            to: baselineUntil!,
          }));
          await this.drift.saveReferences(model, scope.cohort, refs, now);
          baseline = await this.drift.references(model, scope.cohort);
        }
      }
    } else baselineUntil = Math.max(...baseline.map((b) => b.to));
    const own = new Map(baseline.map((b) => [`${b.stream}\u0000${b.quantity}`, Histogram.unpack(b.hist, true)]));
    const fromManifest = new Set(manifest?.refs.keys() ?? []);
    return {
      lookup: (stream, quantity) => {
        const k = `${stream}\u0000${quantity}`;
        return manifest?.refs.get(k) ?? own.get(k);
      },
      baselineUntil,
      fromManifest,
      sources: [...(manifest ? [manifest.source] : []), ...new Set(baseline.map((b) => `baseline: ${b.source}`))],
    };
  }

  /** What the API shows: per cohort, per window, every stream's figures. */
  async report(model: string, opts: { cohort?: string | undefined; from: number; to: number }): Promise<Record<string, unknown>> {
    const rows = await this.drift.evaluations(model, opts.cohort, opts.from, opts.to);
    const cohorts = new Map<string, Map<number, EvaluationRow[]>>();
    for (const r of rows) {
      const byWindow = cohorts.get(r.cohort) ?? new Map<number, EvaluationRow[]>();
      byWindow.set(r.windowStart, [...(byWindow.get(r.windowStart) ?? []), r]);
      cohorts.set(r.cohort, byWindow);
    }
    const manifest = await this.manifestReference(model);
    const out = [];
    for (const [cohort, byWindow] of cohorts) {
      const refs = await this.drift.references(model, cohort);
      out.push({
        cohort,
        reference: {
          manifest: manifest?.source ?? null,
          baseline: refs[0] ? { from: new Date(refs[0].from).toISOString(), to: new Date(refs[0].to).toISOString() } : null,
        },
        windows: [...byWindow.entries()].map(([start, streams]) => ({
          start: new Date(start).toISOString(),
          end: new Date(streams[0]!.windowEnd).toISOString(),
          drifting: streams.filter((s) => s.drift).length,
          streams: streams.map(
            ({ model: _m, cohort: _c, windowStart: _s, windowEnd: _e, site: _site, histograms: _h, ...figures }) => figures,
          ),
        })),
      });
    }
    return { model, thresholds: { ks: DRIFT_MIN_KS, p: DRIFT_MAX_P }, windowMs: this.cfg.windowMs, runbook: DRIFT_RUNBOOK, cohorts: out };
  }

  /** The `model_drift` signal: each (model, cohort, stream, quantity) whose newest window drifts. */
  async signal(now = this.now()): Promise<Observation[]> {
    const rows = await this.drift.drifting(now - 2 * this.cfg.windowMs);
    return rows.map((r) => {
      const cohort = parseCohort(r.cohort);
      return {
        key: `${r.model}/${r.cohort}/${r.stream}/${r.quantity}`,
        site: cohort?.kind === 'site' ? cohort.site : r.site,
        device: null,
        value: r.ks ?? null,
        summary: `model ${r.model} drifts in ${r.cohort}: ${r.stream} ${r.quantity} KS ${r.ks?.toFixed(3)} (p ${r.p?.toExponential(1)}), PSI ${r.psi?.toFixed(3)}, JS ${r.js?.toFixed(3)} over ${r.n} values — see ${DRIFT_RUNBOOK}`,
        labels: { model: r.model, cohort: r.cohort, stream: r.stream, quantity: r.quantity, runbook: DRIFT_RUNBOOK },
      };
    });
  }
}
