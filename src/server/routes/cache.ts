import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import * as S from '../../api/schemas.js';
import { hex } from '../../errors.js';
import type { Session } from '../../session/session.js';
import { apply } from '../context.js';

/** The session view's cache part: settings, coherency counts by check, the bounce pool. */
export function noncoherentView(s: Session) {
  const counts = Object.fromEntries(s.coherencyCounts) as Record<'stale-cpu-read' | 'device-read-stale' | 'lost-device-write' | 'cpu-access-device-owned', number>;
  return {
    coherency: counts,
    cpuCache: s.cacheConfig && { lineSize: s.cacheConfig.lineSize, lines: s.cacheConfig.lines, coherent: [...s.cacheConfig.coherent] },
    bounce: s.bounce && { paddr: hex(s.bounce.paddr), size: s.bounce.size, slots: s.bounce.slots, used: s.bounce.used },
  };
}

/** The CPU data cache (API.md v1.1): its lines, and clean / invalidate / flush by physical range. */
export const cacheRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get('/cache', { schema: { summary: 'CPU data cache: cached lines (in a range) and whether they are dirty', tags: ['memory'], querystring: S.CacheQuery, response: { 200: S.CacheResponse } } }, async (req) => {
    const c = req.iommuSession.cache;
    if (!c) return { lineSize: 0, lines: 0, used: 0, entries: [] };
    const { paddr, size } = req.query;
    const entries = c.entries(paddr, paddr === undefined ? undefined : (size ?? c.lineSize));
    return { lineSize: c.lineSize, lines: c.capacity, used: c.used, entries: entries.map((e) => ({ paddr: hex(e.paddr), dirty: e.dirty })) };
  });

  for (const action of ['clean', 'invalidate', 'flush'] as const) {
    const summary = { clean: 'Clean (write back) the dirty CPU cache lines of a range', invalidate: 'Invalidate (drop) the CPU cache lines of a range: dirty data is lost', flush: 'Clean and invalidate the CPU cache lines of a range' }[action];
    app.post(`/cache/${action}`, { schema: { summary, tags: ['memory'], body: S.CacheRangeBody, response: { 200: S.CacheMaintainResponse } } }, async (req) =>
      apply<{ lines: number }>(req, { op: 'cache-maintain', action, paddr: req.body.paddr, size: req.body.size }),
    );
  }
};
