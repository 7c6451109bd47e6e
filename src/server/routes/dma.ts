import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import * as S from '../../api/schemas.js';
import { apply, applyView } from '../context.js';

const DevParams = z.object({ sid: z.string(), device: z.string() });

/** The DMA API per device (dma_map_single, dma_map_sg, dma_unmap_*, dma_sync_*). */
export const dmaRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get('/devices/:device/dma', { schema: { summary: 'The device DMA state: DMA domain, flush policy, live mappings', tags: ['dma'], params: DevParams, response: { 200: S.DmaStateResponse } } }, async (req) =>
    req.iommuSession.view.dmaState(req.params.device),
  );

  app.patch('/devices/:device/dma', { schema: { summary: 'DMA options: strict or flush-queue invalidation, DMA limit', tags: ['dma'], params: DevParams, body: S.DmaConfigBody, response: { 200: S.DmaStateResponse } } }, async (req) => {
    return applyView(req, { op: 'dma-config', device: req.params.device, ...req.body });
  });

  app.post('/devices/:device/dma/map', { schema: { summary: 'dma_map_single: a fresh IOVA for a physical buffer', tags: ['dma'], params: DevParams, body: S.DmaMapBody, response: { 200: S.DmaMapResponse } } }, async (req) => {
    return applyView(req, { op: 'dma-map', device: req.params.device, ...req.body });
  });

  app.post('/devices/:device/dma/map-sg', { schema: { summary: 'dma_map_sg: segments laid out contiguously in IOVA space', tags: ['dma'], params: DevParams, body: S.DmaMapSgBody, response: { 200: S.DmaMapSgResponse } } }, async (req) => {
    return applyView(req, { op: 'dma-map-sg', device: req.params.device, ...req.body });
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
