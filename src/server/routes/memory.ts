import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import * as S from '../../api/schemas.js';
import { page, pageLimit } from '../paginate.js';
import { fail } from '../../errors.js';
import { MEMORY_IO_LIMIT } from '../../session/commands.js';
import { apply, applyView } from '../context.js';

/** Physical memory as the CPU sees it, and the buffer pools. */
export const memoryRoutes: FastifyPluginAsyncZod = async (app) => {
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: MEMORY_IO_LIMIT }, (_req, body, done) => done(null, body));

  app.get('/pools', { schema: { summary: 'Physical pools: usage and largest free range', tags: ['memory'], response: { 200: S.PoolsResponse } } }, async (req) =>
    req.iommuSession.view.pools(),
  );

  app.get('/buffers', { schema: { summary: 'Allocated physical buffers in paddr order (Link rel=next past limit, default 1000)', tags: ['memory'], querystring: S.PageQuery, response: { 200: S.BuffersResponse } } }, async (req, reply) => {
    const limit = pageLimit(req.query.limit);
    return page(req, reply, req.iommuSession.view.buffers(req.query.from ?? 0, limit), limit);
  });

  app.post('/buffers', { schema: { summary: 'Allocate a physical buffer (priority pools, big-page alignment)', tags: ['memory'], body: S.BufferBody, response: { 201: S.BufferResponse } } }, async (req, reply) => {
    const b = await applyView(req, { op: 'buffer-alloc', ...req.body });
    reply.code(201);
    return b;
  });

  app.delete('/buffers/:paddr', { schema: { summary: 'Free a physical buffer', tags: ['memory'], params: z.object({ sid: z.string(), paddr: S.ParamAddr }), response: { 204: S.NoContent } } }, async (req, reply) => {
    await apply(req, { op: 'buffer-free', paddr: req.params.paddr });
    reply.code(204).send(null);
  });

  app.get('/memory', { schema: { summary: 'Read physical memory (CPU side), application/octet-stream', tags: ['memory'], querystring: S.MemoryQuery } }, async (req, reply) => {
    const { paddr, size = 4096, view } = req.query;
    const s = req.iommuSession;
    s.view.checkRam(paddr, size);
    reply.type('application/octet-stream');
    // With a CPU cache a load changes cache state: a command (revision, trace). view=ram is what devices see.
    const bytes = s.cache && view !== 'ram' ? await applyView(req, { op: 'memory-read', paddr, size }) : s.view.ram(paddr, size);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  });

  app.put('/memory', { schema: { summary: 'Write physical memory (CPU side) from an application/octet-stream body', tags: ['memory'], querystring: S.MemoryQuery.pick({ paddr: true }), response: { 204: S.NoContent } } }, async (req, reply) => {
    const body = req.body;
    if (!Buffer.isBuffer(body)) fail('memoryBodyNotBinary');
    await apply(req, { op: 'memory-write', paddr: req.query.paddr, data: body.toString('base64') });
    reply.code(204).send(null);
  });
};

