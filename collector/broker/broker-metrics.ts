/** The broker's Prometheus series (names are part of the operations contract: docs/operations.md). */
import { Counter, counter, gauge, type Registry } from '../../common/metrics.js';
import type { AckWriter } from './fast-path.js';

export type BrokerMetrics = ReturnType<typeof brokerMetrics>;

export function brokerMetrics(r: Registry) {
  return {
    rejected: counter(r, 'edgetwin_broker_rejected_total', 'Publishes refused or dropped', ['code']),
    accepted: counter(r, 'edgetwin_broker_accepted_readings_total', 'Readings spooled and acknowledged'),
    clients: gauge(r, 'edgetwin_broker_clients', 'Connected MQTT clients'),
    authFailures: counter(r, 'edgetwin_broker_auth_failures_total', 'Refused connections', ['reason']),
    connErrors: counter(
      r,
      'edgetwin_broker_connection_errors_total',
      'Connections closed on an error: garbage bytes, bad packets, no CONNECT in time, resets',
      ['phase'],
    ),
    dropped: counter(r, 'edgetwin_broker_disconnects_total', 'Connected devices the collector dropped', ['reason']),
    delayed: counter(r, 'edgetwin_broker_rate_limited_total', 'Publishes over the per-device rate (delayed or refused)', ['action']),
    quarantined: counter(
      r,
      'edgetwin_broker_quarantined_total',
      'Payloads refused (not readable, not storable, too large) and spooled as quarantine messages for the cloud',
      ['code'],
    ),
    skippedFields: counter(
      r,
      'edgetwin_broker_skipped_fields_total',
      'Non-numeric fields of IoT Hub SDK metric maps: not stored as readings, the message kept in quarantine',
    ),
  };
}

/** Read at scrape time: the fast path only adds to a plain number. */
export function fastPathCounter(r: Registry, acks: AckWriter): void {
  new Counter({
    name: 'edgetwin_broker_fast_path_publishes_total',
    help: 'Telemetry PUBLISH packets taken by the fast path (collector/broker/fast-path.ts); 0 while devices publish means it is not engaged',
    registers: [r],
    collect() {
      this.reset();
      this.inc(acks.fastPublishes);
    },
  });
}
