/**
 * The automatic-rollback rule. A model put in by a rollout is on trial: its alert rate (alerts per
 * 10 000 scored readings, counted from the readings it scored since the swap) is compared with
 * the rate of the model it replaced (over that model's whole time in service):
 *
 *   limit = max(alertRateFloorPer10k, alertRateFactor × previous rate)   (the factor term only once
 *           the previous model has scored minReadings readings; before that, the floor alone)
 *   roll back as soon as the new model has scored ≥ minReadings and its rate > limit;
 *   keep it once it has scored trialReadings without that.
 */
export interface AlertRateRule {
  minReadings: number;
  trialReadings: number;
  alertRateFactor: number;
  alertRateFloorPer10k: number;
}

export class AlertCount {
  readings = 0;
  alerts = 0;

  add(alert: boolean): void {
    this.readings++;
    if (alert) this.alerts++;
  }

  /** Alerts per 10 000 readings; 0 before any reading. */
  get per10k(): number {
    return this.readings === 0 ? 0 : (this.alerts * 10_000) / this.readings;
  }
}

export type TrialVerdict = 'continue' | 'accept' | 'rollback';

export interface TrialJudgement {
  verdict: TrialVerdict;
  readings: number;
  alerts: number;
  alertsPer10k: number;
  previousAlertsPer10k: number | null;
  limitPer10k: number;
}

export function alertLimitPer10k(previous: AlertCount, rule: AlertRateRule): number {
  const relative = previous.readings >= rule.minReadings ? rule.alertRateFactor * previous.per10k : 0;
  return Math.max(rule.alertRateFloorPer10k, relative);
}

export function judgeTrial(trial: AlertCount, previous: AlertCount, rule: AlertRateRule): TrialJudgement {
  const limitPer10k = alertLimitPer10k(previous, rule);
  let verdict: TrialVerdict = 'continue';
  if (trial.readings >= rule.minReadings && trial.per10k > limitPer10k) verdict = 'rollback';
  else if (trial.readings >= rule.trialReadings) verdict = 'accept';
  return {
    verdict,
    readings: trial.readings,
    alerts: trial.alerts,
    alertsPer10k: round1(trial.per10k),
    previousAlertsPer10k: previous.readings > 0 ? round1(previous.per10k) : null,
    limitPer10k: round1(limitPer10k),
  };
}

const round1 = (x: number): number => Math.round(x * 10) / 10;
