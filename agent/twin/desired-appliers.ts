/**
 * Desired properties are applied by small appliers, one per top-level desired key. The twin owns
 * none of the settings: the built-in appliers below drive the agent's sources, and other parts
 * (the scorer's `thresholds` and `model`) register their own with `agent.twin.use(…)`.
 */
import { isPlainObject } from '../../common/config.js';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import type { Source } from '../types.js';

export interface DesiredApplier {
  /** The top-level desired key it owns (IoT Hub property-name rules: no '.', '$' or space). */
  readonly key: string;
  /**
   * Applies the key's desired value — `undefined` when the key is absent, meaning "back to the
   * configured default" — and resolves to what is now in effect, which is reported under
   * `applied.<key>`. Throwing (an EdgetwinError, ideally EDGETWIN_ERR_CONFIG) refuses the value:
   * it is reported under `errors.<key>` and the previous setting stays.
   */
  apply(value: unknown): unknown;
}

/** What the built-in appliers need from the agent. */
export interface SourceControl {
  readonly sourceList: readonly Source[];
  setSourceEnabled(name: string, enabled: boolean): Promise<void> | void;
}

function refuse(key: string, message: string): EdgetwinError {
  return new EdgetwinError(ErrorCodes.CONFIG, `desired "${key}": ${message}`, { details: { key } });
}

export const SAMPLING_MIN_MS = 10;
export const SAMPLING_MAX_MS = 86_400_000;

/** `samplingIntervalMs`: number → every source that samples on an interval; reports each source's effective interval. */
export function samplingIntervalApplier(agent: SourceControl): DesiredApplier {
  const key = 'samplingIntervalMs';
  return {
    key,
    apply(value: unknown): Record<string, number> {
      if (
        value !== undefined &&
        (typeof value !== 'number' || !Number.isInteger(value) || value < SAMPLING_MIN_MS || value > SAMPLING_MAX_MS)
      ) {
        throw refuse(key, `must be an integer from ${SAMPLING_MIN_MS} to ${SAMPLING_MAX_MS}`);
      }
      const sampled = agent.sourceList.filter((s) => typeof s.setIntervalMs === 'function');
      if (value !== undefined && sampled.length === 0) throw refuse(key, 'no source of this agent samples on an interval');
      const out: Record<string, number> = {};
      for (const s of sampled) out[s.name] = s.setIntervalMs!(value as number | undefined);
      return out;
    },
  };
}

/** `sources`: `{ "<name>": { "enabled": bool } }` starts and stops sources live; an absent name runs as configured. */
export function sourcesApplier(agent: SourceControl): DesiredApplier {
  const key = 'sources';
  return {
    key,
    async apply(value: unknown): Promise<Record<string, { enabled: boolean }>> {
      if (value !== undefined && !isPlainObject(value)) throw refuse(key, 'must be an object of { "<source>": { "enabled": true|false } }');
      const wanted = (value ?? {}) as Record<string, unknown>;
      const names = new Set(agent.sourceList.map((s) => s.name));
      for (const [name, v] of Object.entries(wanted)) {
        if (!names.has(name)) throw refuse(key, `this agent has no source "${name}" (it has: ${[...names].join(', ') || 'none'})`);
        if (!isPlainObject(v) || (v['enabled'] !== undefined && typeof v['enabled'] !== 'boolean'))
          throw refuse(key, `"${name}" must be { "enabled": true|false }`);
      }
      const out: Record<string, { enabled: boolean }> = {};
      for (const s of agent.sourceList) {
        const enabled = (wanted[s.name] as { enabled?: boolean } | undefined)?.enabled ?? true;
        await agent.setSourceEnabled(s.name, enabled);
        out[s.name] = { enabled };
      }
      return out;
    },
  };
}
