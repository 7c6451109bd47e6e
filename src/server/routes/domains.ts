import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import * as S from '../../api/schemas.js';
import { page, pageLimit } from '../paginate.js';
import { answer, apply, applyView } from '../context.js';

const DomParams = z.object({ sid: z.string(), did: z.string() });
const unmappedView = (unmapped: number) => ({ unmapped });

/** The IOMMU API: domains, attach/detach, map/unmap/batch, walks and TLB maintenance. */
export const domainRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post('/domains', { schema: { summary: 'iommu_domain_alloc: a page table (pgsizes, flush policy, partial-unmap rule)', tags: ['domains'], body: S.CreateDomainBody, response: { 201: S.DomainResponse } } }, async (req, reply) => {
    const d = await applyView(req, { op: 'domain-alloc', ...(req.body ?? {}) });
    reply.code(201);
    return d;
  });

  app.get('/domains', { schema: { summary: 'All domains', tags: ['domains'], response: { 200: S.DomainsResponse } } }, async (req) => req.iommuSession.view.domains());

  app.get('/domains/:did', { schema: { summary: 'One domain: attached devices, mapped bytes, pages, pending sync', tags: ['domains'], params: DomParams, response: { 200: S.DomainResponse } } }, async (req) =>
    req.iommuSession.view.domain(req.params.did),
  );

  app.delete('/domains/:did', { schema: { summary: 'iommu_domain_free (refused while devices are attached)', tags: ['domains'], params: DomParams, response: { 204: S.NoContent } } }, async (req, reply) => {
    await apply(req, { op: 'domain-free', did: req.params.did });
    reply.code(204).send(null);
  });

  app.post('/domains/:did/attach', { schema: { summary: 'iommu_attach_device: program the context bank (replace: switch on the fly)', tags: ['domains'], params: DomParams, body: S.AttachBody, response: { 200: S.DomainResponse } } }, (req) =>
    applyView(req, { op: 'attach', did: req.params.did, ...req.body }),
  );

  app.post('/domains/:did/detach', { schema: { summary: 'iommu_detach_device: reset the bank, drop its TLB entries', tags: ['domains'], params: DomParams, body: S.DetachBody, response: { 200: S.DomainResponse } } }, (req) =>
    applyView(req, { op: 'detach', did: req.params.did, ...req.body }),
  );

  app.post('/domains/:did/map', { schema: { summary: 'iommu_map: largest page sizes alignment allows, all or nothing', tags: ['domains'], params: DomParams, body: S.MapBody, response: { 200: S.MapResponse } } }, (req) => {
    // Every key named (MapBody is strict: these are all its keys, in its order): one object shape for every map,
    // with no spread of the body. test/server/named-body-keys.test.ts fails when the schema gains a key.
    const b = req.body;
    return applyView(req, { op: 'map', did: req.params.did, iova: b.iova, paddr: b.paddr, size: b.size, prot: b.prot });
  });

  app.post('/domains/:did/unmap', { schema: { summary: 'iommu_unmap: removes every mapped page in the range, splitting large pages', tags: ['domains'], params: DomParams, body: S.UnmapBody, response: { 200: S.UnmapResponse } } }, (req) =>
    answer(applyView(req, { op: 'unmap', did: req.params.did, iova: req.body.iova, size: req.body.size }), unmappedView),
  );

  app.post('/domains/:did/batch', { schema: { summary: 'map and unmap operations in order, all or nothing', tags: ['domains'], params: DomParams, body: S.BatchBody, response: { 200: S.BatchResponse } } }, async (req) => {
    return { results: await applyView(req, { op: 'batch', did: req.params.did, ops: req.body.ops }) };
  });

  app.get('/domains/:did/mappings', { schema: { summary: 'Mappings merged into extents, in iova order (Link rel=next past limit, default 1000)', tags: ['domains'], params: DomParams, querystring: S.MappingsQuery, response: { 200: S.MappingsResponse } } }, async (req, reply) => {
    const q = req.query;
    const limit = pageLimit(q.limit);
    return page(req, reply, req.iommuSession.view.mappings(req.params.did, q.from ?? 0, q.to ?? 2 ** 32, limit), limit);
  });

  app.get(
    '/domains/:did/iova-to-phys/:iova',
    { schema: { summary: 'iommu_iova_to_phys by software walk (no TLB, no fault)', tags: ['domains'], params: DomParams.extend({ iova: S.ParamAddr }), response: { 200: S.IovaToPhysResponse } } },
    async (req) => req.iommuSession.view.iovaToPhys(req.params.did, req.params.iova),
  );

  app.get('/domains/:did/pagetable', { schema: { summary: 'The raw L1/L2 tables, bit-exact descriptors', tags: ['domains'], params: DomParams, response: { 200: S.PagetableResponse } } }, async (req) =>
    req.iommuSession.view.pagetable(req.params.did),
  );

  app.post('/domains/:did/flush', { schema: { summary: 'TLB invalidation on every attached context, whole or by range', tags: ['domains'], params: DomParams, body: S.FlushBody, response: { 200: S.FlushResponse } } }, (req) =>
    applyView(req, { op: 'flush', did: req.params.did, ...(req.body ?? {}) }),
  );

  app.post('/domains/:did/sync', { schema: { summary: 'iotlb_sync: apply the gathered invalidations (deferred policy)', tags: ['domains'], params: DomParams, response: { 200: S.SyncResponse } } }, (req) =>
    applyView(req, { op: 'sync', did: req.params.did }),
  );
};
