import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import * as S from '../../api/schemas.js';
import { hex } from '../../errors.js';
import type { HwAccessResult, HwContext, IommuInstance } from '../../hw/family.js';
import { apply } from '../context.js';
import { accessView, contextView, smmuView } from '../views.js';

const SmmuParams = z.object({ sid: z.string(), smmu: z.string() });
const CtxParams = SmmuParams.extend({ ctx: z.string() });
const MmioParams = SmmuParams.extend({ offset: S.ParamAddr });
const MasterParams = SmmuParams.extend({ mid: z.string().regex(/^[0-9]+$/).transform(Number).pipe(z.number().max(255)) });

type BankRef = { smmu: IommuInstance; bank: HwContext };
type RegAccess = { offset: number; name: string; value: number };
const regView = (r: RegAccess) => ({ offset: hex(r.offset), register: r.name, value: hex(r.value) });

/** The hardware view: SMMUs, context banks, fault registers, stalls, the MMIO window and master-addressed access. */
export const hardwareRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get('/smmus', { schema: { summary: 'Every SMMU with its context banks and TLB counters', tags: ['hardware'], response: { 200: S.SmmusResponse } } }, async (req) => req.iommuSession.soc.smmus.map(smmuView));

  app.get('/smmus/:smmu/contexts/:ctx', { schema: { summary: 'One context bank: registers, stalls, TLB counters', tags: ['hardware'], params: CtxParams, response: { 200: S.ContextResponse } } }, async (req) => {
    const soc = req.iommuSession.soc;
    const smmu = soc.smmu(req.params.smmu);
    return contextView(smmu, soc.context(smmu, req.params.ctx));
  });

  app.patch('/smmus/:smmu/contexts/:ctx', { schema: { summary: 'Set faultMode (terminate/stall) and faultInterrupt', tags: ['hardware'], params: CtxParams, body: S.PatchContextBody, response: { 200: S.ContextResponse } } }, async (req) => {
    const r = await apply<BankRef>(req, { op: 'context-config', smmu: req.params.smmu, ctx: req.params.ctx, ...req.body });
    return contextView(r.smmu, r.bank);
  });

  app.post('/smmus/:smmu/contexts/:ctx/clear-fault', { schema: { summary: 'Write FSR (write-1-to-clear); default clears every set bit', tags: ['hardware'], params: CtxParams, body: S.ClearFaultBody, response: { 200: S.ContextResponse } } }, async (req) => {
    const r = await apply<BankRef>(req, { op: 'clear-fault', smmu: req.params.smmu, ctx: req.params.ctx, ...(req.body ?? {}) });
    return contextView(r.smmu, r.bank);
  });

  app.post('/smmus/:smmu/contexts/:ctx/resume', { schema: { summary: 'Resolve a stalled transaction: retry (re-walk) or terminate', tags: ['hardware'], params: CtxParams, body: S.ResumeBody, response: { 200: S.AccessResponse } } }, async (req) =>
    accessView(await apply<HwAccessResult>(req, { op: 'resume', smmu: req.params.smmu, ctx: req.params.ctx, ...req.body })),
  );

  app.post('/smmus/:smmu/contexts/:ctx/inject-fault', { schema: { summary: 'Force a fault on the next transaction (external, multi-hit, tlb-miss)', tags: ['hardware'], params: CtxParams, body: S.InjectFaultBody, response: { 200: S.ContextResponse } } }, async (req) => {
    const r = await apply<BankRef>(req, { op: 'inject-fault', smmu: req.params.smmu, ctx: req.params.ctx, kind: req.body.kind });
    return contextView(r.smmu, r.bank);
  });

  app.get('/smmus/:smmu/mmio/:offset', { schema: { summary: 'Read one 32-bit register of the 1 MiB window', tags: ['mmio'], params: MmioParams, response: { 200: S.MmioResponse } } }, async (req) => {
    const smmu = req.iommuSession.soc.smmu(req.params.smmu);
    const name = smmu.registerName(req.params.offset);
    return regView({ offset: req.params.offset, name, value: smmu.readRegister(req.params.offset) });
  });

  app.put('/smmus/:smmu/mmio/:offset', { schema: { summary: 'Write one register, with its hardware side effects', tags: ['mmio'], params: MmioParams, body: S.MmioWriteBody, response: { 200: S.MmioResponse } } }, async (req) => {
    const [r] = await apply<RegAccess[]>(req, { op: 'mmio', smmu: req.params.smmu, ops: [{ op: 'write', offset: req.params.offset, value: req.body.value }] });
    return regView(r!);
  });

  app.post('/smmus/:smmu/mmio', { schema: { summary: 'A sequence of register reads and writes, in order', tags: ['mmio'], params: SmmuParams, body: S.MmioBatchBody, response: { 200: S.MmioBatchResponse } } }, async (req) => {
    return { results: (await apply<RegAccess[]>(req, { op: 'mmio', smmu: req.params.smmu, ops: req.body.ops })).map(regView) };
  });

  app.post('/smmus/:smmu/masters/:mid/access', { schema: { summary: 'A transaction by AXI master ID, routed through M2VCBR_N', tags: ['mmio'], params: MasterParams, body: S.AccessBody, response: { 200: S.AccessResponse } } }, async (req) =>
    accessView(await apply<HwAccessResult>(req, { op: 'master-access', smmu: req.params.smmu, ...req.body, mid: req.params.mid })),
  );
};
