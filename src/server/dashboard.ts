/** The dashboard at `/`: static files from web/ and uPlot from its npm package (no CDN). */
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

/** web/ sits beside src/ (run from source) or beside dist/ (run from the build). */
function webRoot(): string | null {
  for (const rel of ['../../web/', '../../../web/']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p + 'index.html')) return p;
  }
  return null;
}

export async function installDashboard(app: FastifyInstance): Promise<void> {
  const root = webRoot();
  if (!root) {
    app.log.warn('web/ not found: the dashboard is not served');
    return;
  }
  await app.register(fastifyStatic, { root, prefix: '/ui/', index: false });
  const uplot = dirname(createRequire(import.meta.url).resolve('uplot/package.json')) + '/dist/';
  await app.register(fastifyStatic, { root: uplot, prefix: '/vendor/', decorateReply: false, allowedPath: (p) => /^\/uPlot\.(iife\.min\.js|min\.css)$/.test(p) });
  app.get('/', { schema: { hide: true } }, (_req, reply) => reply.sendFile('index.html', root));
}
