import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import * as S from '../../api/schemas.js';
import { hex } from '../../errors.js';
import type { DeviceDmaState, DmaMapping } from '../../dma/dma.js';
import { apply } from '../context.js';

const DevParams = z.object({ sid: z.string(), device: z.string() });

const bounceView = (b: { paddr: number; slots: number } | undefined) => (b ? { paddr: hex(b.paddr), slots: b.slots } : null);

const stateView = (st: DeviceDmaState) => ({
  device: st.device,
  mode: st.mode,
  domain: st.domain?.id ?? null,
  flushPolicy: st.domain?.flushPolicy ?? st.flushPolicy,
  dmaLimit: hex(st.dmaLimit),
  pendingFlush: st.fq.length,
  mappings: [...st.mappings.values()].map((m) => ({
    dmaAddr: hex(m.dmaAddr),
    size: m.size,
    dir: m.dir,
    ...(m.owner ? { owner: m.owner } : {}),
    bounce: bounceView(m.segments[0]!.bounce),
    segments: m.segments.map((x) => ({ paddr: hex(x.paddr), size: x.size, dmaAddr: hex(x.dmaAddr), bounce: bounceView(x.bounce) })),
  })),
});

/** The DMA API per device (dma_map_single, dma_map_sg, dma_unmap_*, dma_sync_*). */
export const dmaRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get('/devices/:device/dma', { schema: { summary: 'The device DMA state: DMA domain, flush policy, live mappings', tags: ['dma'], params: DevParams, response: { 200: S.DmaStateResponse } } }, async (req) => {
    const s = req.iommuSession;
    const st = s.dma.devices.get(req.params.device);
    // Reading creates nothing: a device the DMA API has not used yet has no DMA domain.
    if (!st) return { device: req.params.device, mode: 'iommu' as const, domain: null, flushPolicy: 'strict' as const, dmaLimit: '0xffffffff', pendingFlush: 0, mappings: [] };
    return stateView(st);
  });

  app.patch('/devices/:device/dma', { schema: { summary: 'DMA options: strict or flush-queue invalidation, DMA limit', tags: ['dma'], params: DevParams, body: S.DmaConfigBody, response: { 200: S.DmaStateResponse } } }, async (req) => {
    return stateView(await apply<DeviceDmaState>(req, { op: 'dma-config', device: req.params.device, ...req.body }));
  });

  app.post('/devices/:device/dma/map', { schema: { summary: 'dma_map_single: a fresh IOVA for a physical buffer', tags: ['dma'], params: DevParams, body: S.DmaMapBody, response: { 200: S.DmaMapResponse } } }, async (req) => {
    const m = await apply<DmaMapping>(req, { op: 'dma-map', device: req.params.device, ...req.body });
    return { dmaAddr: hex(m.dmaAddr), size: m.size };
  });

  app.post('/devices/:device/dma/map-sg', { schema: { summary: 'dma_map_sg: segments laid out contiguously in IOVA space', tags: ['dma'], params: DevParams, body: S.DmaMapSgBody, response: { 200: S.DmaMapSgResponse } } }, async (req) => {
    const m = await apply<DmaMapping>(req, { op: 'dma-map-sg', device: req.params.device, ...req.body });
    return { dmaAddr: hex(m.dmaAddr), segments: m.segments.map((x) => ({ dmaAddr: hex(x.dmaAddr), size: x.size })) };
  });

  app.post('/devices/:device/dma/unmap', { schema: { summary: 'dma_unmap_single/sg with DMA-debug checks', tags: ['dma'], params: DevParams, body: S.DmaUnmapBody, response: { 204: S.NoContent } } }, async (req, reply) => {
    await apply(req, { op: 'dma-unmap', device: req.params.device, ...req.body });
    reply.code(204).send(null);
  });

  app.post('/devices/:device/dma/sync', { schema: { summary: 'dma_sync_single_for_cpu/device (partial ranges allowed)', tags: ['dma'], params: DevParams, body: S.DmaSyncBody, response: { 204: S.NoContent } } }, async (req, reply) => {
    await apply(req, { op: 'dma-sync', device: req.params.device, ...req.body });
    reply.code(204).send(null);
  });
};
