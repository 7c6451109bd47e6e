import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import * as S from '../../api/schemas.js';
import { applyView } from '../context.js';

const DevParams = z.object({ sid: z.string(), device: z.string() });

/** The hardware data path by device name: one transaction (or transfer), or a batch of them. */
export const deviceRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post('/devices/:device/access', { schema: { summary: 'One transaction or transfer through the device context', tags: ['devices'], params: DevParams, body: S.AccessBody, response: { 200: S.AccessResponse } } }, (req) =>
    applyView(req, { op: 'access', device: req.params.device, ...req.body }),
  );

  app.post('/devices/:device/access-batch', { schema: { summary: 'Independent transactions, in order', tags: ['devices'], params: DevParams, body: S.AccessBatchBody, response: { 200: S.AccessBatchResponse } } }, async (req) => {
    return { results: await applyView(req, { op: 'access-batch', device: req.params.device, ...req.body }) };
  });
};
