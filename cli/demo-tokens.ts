/**
 * The demo's API tokens: an admin token (printed, for writes) and a collector token for the demo
 * site (handed to the collector in its environment). Created once in the demo cloud's state and
 * kept in `<home>/tokens.json` (mode 600), so a second start reuses them.
 */
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TokenStore } from '../cloud/auth/tokens.js';
import { SqliteStore } from '../cloud/store/sqlite-store.js';

export interface DemoTokens {
  admin: string;
  collector: string;
}

export async function demoTokens(home: string, site: string): Promise<DemoTokens> {
  const file = join(home, 'tokens.json');
  const db = await SqliteStore.open({ stateDir: join(home, 'cloud') });
  try {
    const store = new TokenStore(db);
    if (existsSync(file)) {
      const saved = JSON.parse(readFileSync(file, 'utf8')) as Partial<DemoTokens>;
      if (
        saved.admin &&
        saved.collector &&
        (await store.lookup(saved.admin))?.role === 'admin' &&
        (await store.lookup(saved.collector))?.site === site
      ) {
        return { admin: saved.admin, collector: saved.collector };
      }
    }
    const tokens: DemoTokens = {
      admin: (await store.create({ role: 'admin', name: 'demo admin', createdBy: 'edgetwin demo' })).token,
      collector: (await store.create({ role: 'collector', site, name: `demo collector ${site}`, createdBy: 'edgetwin demo' })).token,
    };
    writeFileSync(file, `${JSON.stringify(tokens, null, 2)}\n`, { mode: 0o600 });
    chmodSync(file, 0o600);
    return tokens;
  } finally {
    await db.close();
  }
}
