/** The outbox the outbox tests open: one place for the defaults they share. */
import { join } from 'node:path';
import type { Registry } from '../../common/metrics.js';
import { SqliteOutbox, type OutboxConfig } from '../../common/outbox/outbox.js';
import { silent } from './stack.js';

/** `<dir>/o.db`, 1 MiB, drop_oldest, synchronous=normal, silent; `over` changes any of it. */
export function openOutbox(dir: string, over: Partial<OutboxConfig> = {}, registry?: Registry): SqliteOutbox {
  return new SqliteOutbox(
    { path: join(dir, 'o.db'), maxBytes: 1 << 20, whenFull: 'drop_oldest', synchronous: 'normal', ...over },
    { log: silent(), registry },
  );
}
