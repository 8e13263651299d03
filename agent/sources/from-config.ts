/** The sources an agent runs, built from its config (`sources.*`), in a fixed order. */
import { join } from 'node:path';
import { timestampWindow } from '../../common/wire/storable.js';
import type { AgentConfig } from '../config.js';
import type { Source } from '../types.js';
import { CmapssReplaySource } from './cmapss-replay.js';
import { CsvReplaySource } from './csv-replay.js';
import { HttpReadingsSource } from './http-readings.js';
import { JsonLinesSource } from './json-lines.js';
import { ModbusTcpSource } from './modbus-tcp.js';
import { SimulatorSource } from './simulator.js';

export function sourcesFromConfig(cfg: AgentConfig): Source[] {
  const s = cfg.sources;
  const out: Source[] = [];
  if (s.simulator.enabled) {
    const labelsFile = s.simulator.labelsFile ?? join(cfg.stateDir, 'simulator-labels.jsonl');
    out.push(new SimulatorSource({ ...s.simulator, labelsFile }, cfg.deviceId));
  }
  if (s.csvReplay.enabled) out.push(new CsvReplaySource(s.csvReplay));
  const window = timestampWindow(cfg.timestamps);
  if (s.jsonLines.enabled) out.push(new JsonLinesSource(s.jsonLines, process.stdin, window));
  if (s.modbusTcp.enabled) out.push(new ModbusTcpSource(s.modbusTcp));
  if (s.http.enabled) out.push(new HttpReadingsSource(s.http, window));
  if (s.cmapssReplay.enabled) out.push(new CmapssReplaySource(s.cmapssReplay));
  return out;
}
