import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import * as S from '../../api/schemas.js';
import { applyView } from '../context.js';

const SmmuParams = z.object({ sid: z.string(), smmu: z.string() });
const CtxParams = SmmuParams.extend({ ctx: z.string() });
const MmioParams = SmmuParams.extend({ offset: S.ParamAddr });
const MasterParams = SmmuParams.extend({ mid: z.string().regex(/^[0-9]+$/).transform(Number).pipe(z.number().max(255)) });

/** The hardware view: SMMUs, context banks, fault registers, stalls, the MMIO window and master-addressed access. */
export const hardwareRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get('/smmus', { schema: { summary: 'Every SMMU with its context banks and TLB counters', tags: ['hardware'], response: { 200: S.SmmusResponse } } }, async (req) => req.iommuSession.view.smmus());

  app.get('/smmus/:smmu/contexts/:ctx', { schema: { summary: 'One context bank: registers, stalls, TLB counters', tags: ['hardware'], params: CtxParams, response: { 200: S.ContextResponse } } }, async (req) =>
    req.iommuSession.view.context(req.params.smmu, req.params.ctx),
  );

  app.patch('/smmus/:smmu/contexts/:ctx', { schema: { summary: 'Set faultMode (terminate/stall) and faultInterrupt', tags: ['hardware'], params: CtxParams, body: S.PatchContextBody, response: { 200: S.ContextResponse } } }, (req) =>
    applyView(req, { op: 'context-config', smmu: req.params.smmu, ctx: req.params.ctx, ...req.body }),
  );

  app.post('/smmus/:smmu/contexts/:ctx/clear-fault', { schema: { summary: 'Write FSR (write-1-to-clear); default clears every set bit', tags: ['hardware'], params: CtxParams, body: S.ClearFaultBody, response: { 200: S.ContextResponse } } }, (req) =>
    applyView(req, { op: 'clear-fault', smmu: req.params.smmu, ctx: req.params.ctx, ...(req.body ?? {}) }),
  );

  app.post('/smmus/:smmu/contexts/:ctx/resume', { schema: { summary: 'Resolve a stalled transaction: retry (re-walk) or terminate', tags: ['hardware'], params: CtxParams, body: S.ResumeBody, response: { 200: S.AccessResponse } } }, (req) =>
    applyView(req, { op: 'resume', smmu: req.params.smmu, ctx: req.params.ctx, ...req.body }),
  );

  app.post('/smmus/:smmu/contexts/:ctx/inject-fault', { schema: { summary: 'Force a fault on the next transaction (external, multi-hit, tlb-miss)', tags: ['hardware'], params: CtxParams, body: S.InjectFaultBody, response: { 200: S.ContextResponse } } }, (req) =>
    applyView(req, { op: 'inject-fault', smmu: req.params.smmu, ctx: req.params.ctx, kind: req.body.kind }),
  );

  app.get('/smmus/:smmu/mmio/:offset', { schema: { summary: 'Read one 32-bit register of the 1 MiB window', tags: ['mmio'], params: MmioParams, response: { 200: S.MmioResponse } } }, async (req) =>
    req.iommuSession.view.register(req.params.smmu, req.params.offset),
  );

  app.put('/smmus/:smmu/mmio/:offset', { schema: { summary: 'Write one register, with its hardware side effects', tags: ['mmio'], params: MmioParams, body: S.MmioWriteBody, response: { 200: S.MmioResponse } } }, async (req) => {
    const [r] = await applyView(req, { op: 'mmio', smmu: req.params.smmu, ops: [{ op: 'write', offset: req.params.offset, value: req.body.value }] });
    return r!;
  });

  app.post('/smmus/:smmu/mmio', { schema: { summary: 'A sequence of register reads and writes, in order', tags: ['mmio'], params: SmmuParams, body: S.MmioBatchBody, response: { 200: S.MmioBatchResponse } } }, async (req) => {
    return { results: await applyView(req, { op: 'mmio', smmu: req.params.smmu, ops: req.body.ops }) };
  });

  app.post('/smmus/:smmu/masters/:mid/access', { schema: { summary: 'A transaction by AXI master ID, routed through M2VCBR_N', tags: ['mmio'], params: MasterParams, body: S.AccessBody, response: { 200: S.AccessResponse } } }, (req) =>
    applyView(req, { op: 'master-access', smmu: req.params.smmu, ...req.body, mid: req.params.mid }),
  );
};
