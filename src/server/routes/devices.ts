import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import * as S from '../../api/schemas.js';
import { applyView } from '../context.js';

const DevParams = z.object({ sid: z.string(), device: z.string() });

/** The hardware data path by device name: one transaction (or transfer), or a batch of them. */
export const deviceRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post('/devices/:device/access', { schema: { summary: 'One transaction or transfer through the device context', tags: ['devices'], params: DevParams, body: S.AccessBody, response: { 200: S.AccessResponse } } }, (req) => {
    const b = req.body;
    // The common access, iova and kind alone, as a literal (one object shape, no spread); any other body as it came
    // (test/server/named-body-keys.test.ts fails when AccessBody gains a key this test does not name).
    const plain = !('priv' in b || 'mid' in b || 'size' in b || 'data' in b);
    return applyView(req, plain ? { op: 'access', device: req.params.device, iova: b.iova, access: b.access } : { op: 'access', device: req.params.device, ...b });
  });

  app.post('/devices/:device/access-batch', { schema: { summary: 'Independent transactions, in order', tags: ['devices'], params: DevParams, body: S.AccessBatchBody, response: { 200: S.AccessBatchResponse } } }, async (req) => {
    return { results: await applyView(req, { op: 'access-batch', device: req.params.device, ...req.body }) };
  });
};
