/** edgetwin's own version (package.json), reported by the agent's twin and the site heartbeat. */
import { readFileSync } from 'node:fs';

function readPackageVersion(): string {
  // ../ from the sources, ../../ from dist/.
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'edgetwin' && pkg.version) return pkg.version;
    } catch {
      // try the next location
    }
  }
  return 'unknown';
}

export const EDGETWIN_VERSION = readPackageVersion();
