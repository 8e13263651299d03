import type { EdgetwinError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';

/**
 * Logs refused input records (a bad line, row or request) with their code; a flood of them logs at
 * most 10 lines a second per source, and the next line says how many were not logged.
 */
export class RejectLog {
  private readonly windows = new Map<string, { windowStart: number; logged: number; suppressed: number }>();

  constructor(private readonly logger: Logger) {}

  log(name: string, err: EdgetwinError): void {
    const now = Date.now();
    let st = this.windows.get(name);
    if (!st || now - st.windowStart >= 1000) {
      st = { windowStart: now, logged: 0, suppressed: st?.suppressed ?? 0 };
      this.windows.set(name, st);
    }
    if (st.logged >= 10) {
      st.suppressed++;
      return;
    }
    st.logged++;
    const suppressed = st.suppressed;
    st.suppressed = 0;
    this.logger.warn({ source: name, code: err.code, ...err.details, ...(suppressed ? { suppressed } : {}) }, err.message);
  }
}
