/**
 * The agent's scorer when several models run: the anomaly model scores the readings, the failure
 * model appends its predictions for the assets' completed steps, and the drift recorder appends
 * the histograms of every interval that has ended — all into the batch being committed, so they
 * share its transaction, its identities and the outbox's lanes. One part failing leaves the
 * others running (and the readings committed).
 */
import type { Logger } from '../../common/log.js';
import type { DriftRecorder } from '../drift/drift-recorder.js';
import type { Scorer, SourceReading } from '../types.js';

export class ScorerChain implements Scorer {
  constructor(
    private readonly parts: { anomaly?: Scorer | undefined; failure?: Scorer | undefined; drift?: DriftRecorder | undefined },
    private readonly log?: Logger,
  ) {}

  get modelVersion(): string {
    return this.parts.anomaly?.modelVersion ?? this.parts.failure?.modelVersion ?? '';
  }

  versions(): Record<string, string> {
    const { anomaly, failure } = this.parts;
    return { ...(anomaly ? { model: anomaly.modelVersion } : {}), ...(failure ? { failureModel: failure.modelVersion } : {}) };
  }

  async score(readings: SourceReading[]): Promise<void> {
    for (const [name, part] of [
      ['anomaly', this.parts.anomaly],
      ['failure', this.parts.failure],
    ] as const) {
      if (!part) continue;
      try {
        await part.score(readings);
      } catch (err) {
        this.log?.warn({ part: name, err }, 'scorer part failed; its results are missing from this batch');
      }
    }
    const drift = this.parts.drift?.collect();
    if (drift) for (const r of drift) readings.push(r);
  }

  async close(): Promise<void> {
    await this.parts.anomaly?.close();
    await this.parts.failure?.close();
  }
}
