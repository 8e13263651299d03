/**
 * The operators' dashboard: static files served by the cloud itself, no build step and no
 * separate server. The assets hold no data (every figure comes from the authenticated API), so
 * they are public; the API calls they make carry the operator's token.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { typed } from './params.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** cloud/dashboard from source (tests) or from dist/cloud/api/routes (production). */
function dashboardDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, '../../dashboard'), join(here, '../../../../cloud/dashboard')];
  const found = candidates.find((d) => existsSync(join(d, 'index.html')));
  if (!found) throw new Error(`dashboard assets not found (looked in ${candidates.join(', ')})`);
  return found;
}

function loadAssets(): Map<string, { body: Buffer; type: string }> {
  const dir = dashboardDir();
  const assets = new Map<string, { body: Buffer; type: string }>();
  for (const f of [
    'index.html',
    'app.js',
    'api.js',
    'format.js',
    'overview.js',
    'twin.js',
    'methods.js',
    'alerts.js',
    'chart.js',
    'rul.js',
    'drift.js',
    'style.css',
  ]) {
    assets.set(f, { body: readFileSync(join(dir, f)), type: TYPES[f.slice(f.lastIndexOf('.'))]! });
  }
  const uplot = dirname(createRequire(import.meta.url).resolve('uplot/dist/uPlot.iife.min.js'));
  assets.set('vendor/uPlot.iife.min.js', { body: readFileSync(join(uplot, 'uPlot.iife.min.js')), type: TYPES['.js']! });
  assets.set('vendor/uPlot.min.css', { body: readFileSync(join(uplot, 'uPlot.min.css')), type: TYPES['.css']! });
  return assets;
}

export function registerDashboardRoutes(fastify: FastifyInstance): void {
  const app = typed(fastify);
  const assets = loadAssets();
  const hide = { schema: { hide: true } };
  app.get('/', hide, async (_req, reply) => reply.redirect('/dashboard/'));
  app.get('/dashboard', hide, async (_req, reply) => reply.redirect('/dashboard/'));
  app.get('/dashboard/*', { schema: { hide: true, params: Type.Object({ '*': Type.String() }) } }, async (req, reply) => {
    const path = req.params['*'] || 'index.html';
    const asset = assets.get(path);
    if (!asset) return reply.status(404).send({ code: 'EDGETWIN_ERR_NOT_FOUND', message: 'no such dashboard file' });
    return reply
      .header('content-type', asset.type)
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff')
      .header('content-security-policy', "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'")
      .send(asset.body);
  });
}
