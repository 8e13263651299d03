/**
 * Signals: conditions other parts of the cloud know about, for rules of kind `signal`. A module
 * registers a function that answers, when asked, every key for which its condition holds now
 * (e.g. `rul_low`: each device and asset whose latest predicted remaining life is below its
 * threshold; `model_drift`: each model version and cohort whose drift test fails). Asked on every
 * evaluation, so a signal resolves when its condition stops holding, and nothing is lost across
 * restarts. A module that learns of a change between evaluations calls `poke()` for a prompt one.
 */
export interface Observation {
  /** What the condition is about, unique within the rule (a device id, `device/asset`, `model@version/cohort`…). */
  key: string;
  site: string | null;
  device: string | null;
  /** The measured value (RUL cycles, KS distance…), when there is one. */
  value: number | null;
  summary: string;
  labels?: Record<string, string>;
}

export type SignalSource = (now: number) => Promise<Observation[]>;

export class AlertSignals {
  private readonly sources = new Map<string, SignalSource>();
  private wake: (() => void) | undefined;

  /** Registers (or replaces) the source of signal `name`; answers a function that unregisters it. */
  register(name: string, source: SignalSource): () => void {
    this.sources.set(name, source);
    return () => {
      if (this.sources.get(name) === source) this.sources.delete(name);
    };
  }

  has(name: string): boolean {
    return this.sources.has(name);
  }

  names(): string[] {
    return [...this.sources.keys()];
  }

  /** Current observations of `name`; none when nothing registered it (yet). */
  observe(name: string, now: number): Promise<Observation[]> {
    return this.sources.get(name)?.(now) ?? Promise.resolve([]);
  }

  /** Something changed: evaluate soon rather than at the next interval. */
  poke(): void {
    this.wake?.();
  }

  /** The engine's wake-up (set once by AlertEngine). */
  onPoke(fn: () => void): void {
    this.wake = fn;
  }
}
