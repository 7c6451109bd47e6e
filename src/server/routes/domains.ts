import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import * as S from '../../api/schemas.js';
import { page, pageLimit } from '../paginate.js';
import { IommuError, hex } from '../../errors.js';
import type { Domain } from '../../iommu/domain.js';
import type { BatchResult } from '../../iommu/iommu.js';
import { pageCountsObject } from '../../iommu/iommu.js';
import type { PageCounts } from '../../pgtable/v7s.js';
import { protToNames } from '../../pgtable/desc.js';
import { apply } from '../context.js';
import { domainView } from '../views.js';

const DomParams = z.object({ sid: z.string(), did: z.string() });

const mapView = (r: { iova: number; size: number; pages: PageCounts }) => ({ iova: hex(r.iova), size: r.size, pages: pageCountsObject(r.pages) });

/** The IOMMU API: domains, attach/detach, map/unmap/batch, walks and TLB maintenance. */
export const domainRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post('/domains', { schema: { summary: 'iommu_domain_alloc: a page table (pgsizes, flush policy, partial-unmap rule)', tags: ['domains'], body: S.CreateDomainBody, response: { 201: S.DomainResponse } } }, async (req, reply) => {
    const d = await apply<Domain>(req, { op: 'domain-alloc', ...(req.body ?? {}) });
    reply.code(201);
    return domainView(d);
  });

  app.get('/domains', { schema: { summary: 'All domains', tags: ['domains'], response: { 200: S.DomainsResponse } } }, async (req) => [...req.iommuSession.iommu.domains.values()].map(domainView));

  app.get('/domains/:did', { schema: { summary: 'One domain: attached devices, mapped bytes, pages, pending sync', tags: ['domains'], params: DomParams, response: { 200: S.DomainResponse } } }, async (req) =>
    domainView(req.iommuSession.iommu.domain(req.params.did)),
  );

  app.delete('/domains/:did', { schema: { summary: 'iommu_domain_free (refused while devices are attached)', tags: ['domains'], params: DomParams, response: { 204: S.NoContent } } }, async (req, reply) => {
    await apply(req, { op: 'domain-free', did: req.params.did });
    reply.code(204).send(null);
  });

  app.post('/domains/:did/attach', { schema: { summary: 'iommu_attach_device: program the context bank (replace: switch on the fly)', tags: ['domains'], params: DomParams, body: S.AttachBody, response: { 200: S.DomainResponse } } }, async (req) =>
    domainView(await apply<Domain>(req, { op: 'attach', did: req.params.did, ...req.body })),
  );

  app.post('/domains/:did/detach', { schema: { summary: 'iommu_detach_device: reset the bank, drop its TLB entries', tags: ['domains'], params: DomParams, body: S.DetachBody, response: { 200: S.DomainResponse } } }, async (req) =>
    domainView(await apply<Domain>(req, { op: 'detach', did: req.params.did, ...req.body })),
  );

  app.post('/domains/:did/map', { schema: { summary: 'iommu_map: largest page sizes alignment allows, all or nothing', tags: ['domains'], params: DomParams, body: S.MapBody, response: { 200: S.MapResponse } } }, async (req) =>
    mapView(await apply<{ iova: number; size: number; pages: PageCounts }>(req, { op: 'map', did: req.params.did, ...req.body })),
  );

  app.post('/domains/:did/unmap', { schema: { summary: 'iommu_unmap: removes every mapped page in the range, splitting large pages', tags: ['domains'], params: DomParams, body: S.UnmapBody, response: { 200: S.UnmapResponse } } }, async (req) => ({
    unmapped: await apply<number>(req, { op: 'unmap', did: req.params.did, ...req.body }),
  }));

  app.post('/domains/:did/batch', { schema: { summary: 'map and unmap operations in order, all or nothing', tags: ['domains'], params: DomParams, body: S.BatchBody, response: { 200: S.BatchResponse } } }, async (req) => {
    const results = await apply<BatchResult[]>(req, { op: 'batch', did: req.params.did, ops: req.body.ops });
    return { results: results.map((r) => (r.op === 'map' ? { op: 'map' as const, ...mapView(r) } : r)) };
  });

  app.get('/domains/:did/mappings', { schema: { summary: 'Mappings merged into extents, in iova order (Link rel=next past limit, default 1000)', tags: ['domains'], params: DomParams, querystring: S.MappingsQuery, response: { 200: S.MappingsResponse } } }, async (req, reply) => {
    const q = req.query;
    const limit = pageLimit(q.limit);
    const extents = req.iommuSession.iommu.mappings(req.params.did, q.from ?? 0, q.to ?? 2 ** 32, limit + 1);
    return page(req, reply, extents, limit, (m) => m.iova + m.size).map((m) => ({ iova: hex(m.iova), paddr: hex(m.paddr), size: m.size, pageSize: m.pageSize, prot: protToNames(m.prot) }));
  });

  app.get(
    '/domains/:did/iova-to-phys/:iova',
    { schema: { summary: 'iommu_iova_to_phys by software walk (no TLB, no fault)', tags: ['domains'], params: DomParams.extend({ iova: S.ParamAddr }), response: { 200: S.IovaToPhysResponse } } },
    async (req) => {
      if (req.params.iova > 0xffffffff) throw new IommuError('OUT_OF_RANGE', 'iova is past 0xffffffff', { iova: req.params.iova });
      const r = req.iommuSession.iommu.iovaToPhys(req.params.did, req.params.iova);
      return { iova: hex(r.iova), paddr: hex(r.paddr), pageSize: r.pageSize, prot: protToNames(r.prot) };
    },
  );

  app.get('/domains/:did/pagetable', { schema: { summary: 'The raw L1/L2 tables, bit-exact descriptors', tags: ['domains'], params: DomParams, response: { 200: S.PagetableResponse } } }, async (req) => {
    const d = req.iommuSession.iommu.domain(req.params.did);
    const dump = d.table.dumpTables();
    if (dump.kind === 'entries') {
      return { family: 'gart' as const, aperture: { base: hex(dump.aperture.base), size: dump.aperture.size }, entries: dump.entries.map((e) => ({ iova: hex(e.iova), pte: hex(e.pte) })) };
    }
    return {
      family: d.family,
      ttbr0: hex(dump.root),
      l1: dump.l1.map((e) => ({ index: e.index, desc: hex(e.desc) })),
      l2: dump.l2.map((t) => ({ base: hex(t.base), entries: t.entries.map((e) => ({ index: e.index, desc: hex(e.desc) })) })),
    };
  });

  app.post('/domains/:did/flush', { schema: { summary: 'TLB invalidation on every attached context, whole or by range', tags: ['domains'], params: DomParams, body: S.FlushBody, response: { 200: S.FlushResponse } } }, async (req) =>
    apply<{ contexts: number; invalidated: number }>(req, { op: 'flush', did: req.params.did, ...(req.body ?? {}) }),
  );

  app.post('/domains/:did/sync', { schema: { summary: 'iotlb_sync: apply the gathered invalidations (deferred policy)', tags: ['domains'], params: DomParams, response: { 200: S.SyncResponse } } }, async (req) => {
    const r = await apply<{ invalidated: number; ranges: Array<{ iova: number; size: number }> }>(req, { op: 'sync', did: req.params.did });
    return { invalidated: r.invalidated, ranges: r.ranges.map((x) => ({ iova: hex(x.iova), size: x.size })) };
  });
};
