import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import * as S from '../../api/schemas.js';
import { actor, checkBatch } from '../context.js';
import { accessView } from '../views.js';
import { accessRequest } from './hardware.js';

const DevParams = z.object({ sid: z.string(), device: z.string() });

/** The hardware data path by device name: one transaction (or transfer), or a batch of them. */
export const deviceRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post('/devices/:device/access', { schema: { tags: ['devices'], params: DevParams, body: S.AccessBody, response: { 200: S.AccessResponse } } }, async (req) => {
    const s = req.iommuSession;
    const { smmu, bank } = s.soc.device(req.params.device);
    const b = req.body;
    const data = b.data !== undefined ? Buffer.from(b.data, 'base64') : undefined;
    const tr = accessRequest(b.iova, b.access, b.priv, b.mid ?? bank.mids[0] ?? 0, b.size, data);
    return accessView(s.mutate(actor(req), () => smmu.transfer(bank, tr)));
  });

  app.post('/devices/:device/access-batch', { schema: { tags: ['devices'], params: DevParams, body: S.AccessBatchBody, response: { 200: S.AccessBatchResponse } } }, async (req) => {
    const s = req.iommuSession;
    const { smmu, bank } = s.soc.device(req.params.device);
    const b = req.body;
    checkBatch(b.iovas.length, app.iommudOptions.limits.maxBatchOps);
    // Every item is checked before the first transaction: a malformed item refuses the whole request.
    const reqs = b.iovas.map((iova) => accessRequest(iova, b.access, b.priv, b.mid ?? bank.mids[0] ?? 0, undefined, undefined));
    return s.mutate(actor(req), () => ({ results: reqs.map((r) => accessView(smmu.transfer(bank, r))) }));
  });
};
