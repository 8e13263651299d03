/** What an alert is, as the API, the dashboard and every notification show it. */
import type { Severity } from './notify/destinations.js';

export type AlertState = 'pending' | 'firing' | 'resolved';

export interface Alert {
  id: string;
  ruleId: string;
  ruleName: string;
  kind: string;
  severity: Severity;
  state: AlertState;
  /** What the condition is about: a device id, a site, `lakehouse`, `api`, a model cohort… */
  key: string;
  site: string | null;
  device: string | null;
  summary: string;
  /** The measured value that crossed the threshold (seconds, ratio, score…), when there is one. */
  value: number | null;
  labels: Record<string, string>;
  /** When the condition was first seen true. */
  startedAt: string;
  firedAt: string | null;
  resolvedAt: string | null;
  lastSeenAt: string;
  acknowledgedAt: string | null;
  acknowledgedBy: string | null;
  ackNote: string | null;
  /** True while a silence matches it (no notification is sent). */
  silenced: boolean;
}

/** The body of every notification (the JSON webhook sends it as is; Slack, Teams and email render it). */
export interface NotificationBody {
  /** `firing` once per open alert, `resolved` once when it closes. */
  event: 'firing' | 'resolved';
  alert: Alert;
  /** Link to the alert on the dashboard, when `alerts.publicUrl` is set. */
  url: string | null;
}
