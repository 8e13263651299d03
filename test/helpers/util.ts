/** Test utilities with no dependency on the daemons (safe to import from any test). */
import { mkdtempSync, rmSync } from 'node:fs';
// Children start without tap's process tracker when coverage is off (child-env.ts says why).
import './child-env.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function tempDir(prefix = 'edgetwin-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Polls `check` until it holds. `everyMs` spaces the polls: 25 ms suits a cheap check; a check that
 * scans the lake (`cloud.identities`, a DuckDB read of every silver file) at 25 ms spends more CPU
 * than the daemons it waits for, so such callers pass a few hundred ms.
 */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string, everyMs = 25): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    // About time: waitFor's own poll interval.
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
