/** The chaos run's figures: one JSON object, its one-screen rendering, and the pass/fail verdict. */
import type { LoadFigures } from './load.js';
import type { Peaks } from './peaks.js';
import type { VerifyFigures } from './verify.js';

export interface ChaosFigures extends VerifyFigures, Peaks {
  /** How to run this again: `npm run chaos -- …` with the seed. */
  command: string;
  seed: number;
  quick: boolean;
  agents: number;
  collectors: number;
  readings_target: number;
  readings_sent: number;
  retried_503: number;
  unexpected_responses: number;
  max_ack_ms: number;
  twin_mismatches: number;
  desired_changes: number;
  desired_changes_during_faults: number;
  desired_not_applied: number;
  daemon_crashes: number;
  restart_failures: number;
  faults_total: number;
  faults: Record<string, number>;
  faults_skipped: Record<string, number>;
  cloud_outage_s: number;
  duration_s: number;
  spool_cap_bytes: number;
  uplink_inflight_max: number;
  uplink_batch_max_bytes: number;
  outbox_cap_bytes: number;
  send_s: number;
  drain_s: number;
  converged: boolean;
  ok: boolean;
}

/** Every way the run can fail; empty means it passed. */
export function failures(f: Omit<ChaosFigures, 'ok'>): string[] {
  const out: string[] = [];
  const zero: (keyof Omit<ChaosFigures, 'ok'>)[] = [
    'readings_lost',
    'readings_duplicated',
    'identity_duplicates',
    'readings_invented',
    'seq_gaps',
    'seq_beyond_committed',
    'order_violations',
    'quarantined',
    'twin_mismatches',
    'desired_not_applied',
    'daemon_crashes',
    'restart_failures',
    'unexpected_responses',
    'outbox_dropped',
    'spool_dropped',
  ];
  for (const k of zero) if (Number(f[k]) !== 0) out.push(`${k} = ${String(f[k])}`);
  if (!f.converged) out.push('the system did not converge (not every committed reading reached silver in time)');
  if (f.readings_sent < f.readings_target) out.push(`only ${f.readings_sent} of ${f.readings_target} readings were sent`);
  return out;
}

export function loadFiguresOf(l: LoadFigures): Pick<ChaosFigures, 'readings_sent' | 'retried_503' | 'unexpected_responses' | 'max_ack_ms'> {
  return { readings_sent: l.sent, retried_503: l.retried503, unexpected_responses: l.unexpected, max_ack_ms: l.maxAckMs };
}

const n = (x: number): string => x.toLocaleString('en-US');

export function render(f: ChaosFigures, why: string[]): string {
  const faults = Object.entries(f.faults)
    .sort()
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  const skipped = Object.entries(f.faults_skipped)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return [
    `chaos run — seed ${f.seed}${f.quick ? ' (quick)' : ''}: ${f.agents} agents, ${f.collectors} collector(s), 1 cloud`,
    '',
    `  readings sent            ${n(f.readings_sent)} of ${n(f.readings_target)}`,
    `  acknowledged             ${n(f.readings_acknowledged)}   (in doubt: ${n(f.readings_in_doubt)}, of which stored ${n(f.readings_in_doubt_stored)})`,
    `  stored (silver)          ${n(f.readings_stored)}`,
    `  lost                     ${n(f.readings_lost)}`,
    `  duplicated               ${n(f.readings_duplicated)}   (identity duplicates ${n(f.identity_duplicates)})`,
    `  invented                 ${n(f.readings_invented)}`,
    `  seq gaps / order breaks  ${n(f.seq_gaps)} / ${n(f.order_violations)}`,
    `  quarantined              ${n(f.quarantined)}`,
    `  end-to-end latency       p50 ${n(f.latency_p50_ms)} ms, p99 ${n(f.latency_p99_ms)} ms, max ${n(f.latency_max_ms)} ms`,
    `  twin = last reading      ${f.twin_mismatches === 0 ? 'yes' : `NO (${f.twin_mismatches} mismatches)`}`,
    `  desired changes          ${f.desired_changes} (${f.desired_changes_during_faults} during faults), not applied: ${f.desired_not_applied}`,
    `  faults injected          ${f.faults_total}: ${faults}${skipped ? `  (skipped, target already down: ${skipped})` : ''}`,
    `  back-pressure            spool peak ${n(f.spool_peak_bytes)} of ${n(f.spool_cap_bytes)} B, outbox peak ${n(f.outbox_peak_bytes)} of ${n(f.outbox_cap_bytes)} B, 503s retried ${n(f.retried_503)}`,
    `  drops / crashes          outbox ${f.outbox_dropped}, spool ${f.spool_dropped} / daemon crashes ${f.daemon_crashes}, failed restarts ${f.restart_failures}`,
    `  time                     sending ${f.send_s} s, draining ${f.drain_s} s`,
    '',
    why.length === 0
      ? 'PASS: every acknowledged reading is stored exactly once, in order'
      : `FAIL:\n${why.map((w) => `  - ${w}`).join('\n')}`,
  ].join('\n');
}
