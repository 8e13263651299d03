/**
 * The per-request logger fastify gets from the cloud (cloud/api/lazy-logger.ts): no pino child is
 * built for a request that never logs, and one that logs writes the same line a child would
 * (request id bound, redaction applied).
 */
import t from 'tap';
import type { FastifyBaseLogger } from 'fastify';
import { lazyChildLogger } from '../../cloud/api/lazy-logger.js';
import { createLogger } from '../../common/log.js';

t.test('the request logger is built on first use, with the bindings a child has', (t) => {
  const lines: Record<string, unknown>[] = [];
  const base = createLogger('cloud', { level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  let children = 0;
  const parent = new Proxy(base, {
    get: (target, key, receiver) =>
      key === 'child'
        ? (...a: Parameters<FastifyBaseLogger['child']>) => {
            children++;
            return (target as unknown as FastifyBaseLogger).child(...a);
          }
        : Reflect.get(target, key, receiver),
  }) as unknown as FastifyBaseLogger;

  const quiet = lazyChildLogger(parent, { reqId: 'req-1' }, {});
  t.equal(quiet.level, 'info', 'the level is the parent’s');
  t.equal(children, 0, 'a request that never logs builds no child');

  const loud = lazyChildLogger(parent, { reqId: 'req-2' }, {});
  loud.info({ token: 'secret-token' }, 'first');
  loud.warn('second');
  t.equal(children, 1, 'one child, built once');
  t.match(lines, [
    { reqId: 'req-2', msg: 'first', token: '[redacted]', level: 30 },
    { reqId: 'req-2', msg: 'second', level: 40 },
  ]);
  loud.debug('below the level');
  t.equal(lines.length, 2, 'the level still applies');
  const sub = loud.child({ part: 'x' });
  sub.info('third');
  t.match(lines[2], { reqId: 'req-2', part: 'x', msg: 'third' }, 'a child of it keeps its bindings');
  t.end();
});
