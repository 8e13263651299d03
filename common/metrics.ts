/**
 * Each daemon owns one Prometheus registry (not prom-client's global one), so several daemons can
 * live in one process in tests and the demo without their series colliding.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export { Counter, Gauge, Histogram, Registry };

export function createRegistry(component: string, withDefaults = false): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ component });
  if (withDefaults) collectDefaultMetrics({ register: registry, prefix: 'edgetwin_' });
  return registry;
}

export function counter(registry: Registry, name: string, help: string, labelNames: string[] = []): Counter<string> {
  return new Counter({ name, help, labelNames, registers: [registry] });
}

export function gauge(registry: Registry, name: string, help: string, labelNames: string[] = []): Gauge<string> {
  return new Gauge({ name, help, labelNames, registers: [registry] });
}

export function histogram(
  registry: Registry,
  name: string,
  help: string,
  labelNames: string[] = [],
  buckets?: number[],
): Histogram<string> {
  return new Histogram({ name, help, labelNames, registers: [registry], ...(buckets ? { buckets } : {}) });
}
