/** The agent runner's Prometheus series (names are part of the operations contract: docs/operations.md). */
import { Gauge, counter, type Registry } from '../common/metrics.js';

export type AgentMetrics = ReturnType<typeof agentMetrics>;

/** `pending`: readings in memory waiting for their commit (read at scrape time). */
export function agentMetrics(r: Registry, pending: () => number) {
  new Gauge({
    name: 'edgetwin_agent_pending_readings',
    help: 'Readings in memory waiting for their commit',
    registers: [r],
    collect() {
      this.set(pending());
    },
  });
  return {
    produced: counter(r, 'edgetwin_agent_readings_total', 'Readings committed to the outbox'),
    sourceErrors: counter(r, 'edgetwin_agent_source_errors_total', 'Source failures (each is followed by a restart after backoff)', [
      'source',
    ]),
    rejected: counter(r, 'edgetwin_agent_rejected_total', 'Input records refused by a source (bad line, row, request)', ['source', 'code']),
    dropped: counter(
      r,
      'edgetwin_agent_dropped_total',
      'Readings lost (memory: memoryMaxReadings reached; full: a commit larger than the cap; error: a failed write; device_id_changed: an old backlog discarded by outbox.onDeviceIdChange)',
      ['reason'],
    ),
  };
}
