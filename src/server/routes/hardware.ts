import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import * as S from '../../api/schemas.js';
import { IommuError, hex } from '../../errors.js';
import type { TransferRequest } from '../../hw/smmu.js';
import { ACCESS_NAMES } from '../../hw/context.js';
import { decodeOffset, readRegister, writeRegister } from '../../hw/mmio.js';
import { ACTLR_CFCFG, ACTLR_CFEIE, FSR } from '../../hw/regs.js';
import { actor, checkBatch } from '../context.js';
import { accessView, contextView, smmuView } from '../views.js';

const SmmuParams = z.object({ sid: z.string(), smmu: z.string() });
const CtxParams = SmmuParams.extend({ ctx: z.string() });
const MmioParams = SmmuParams.extend({ offset: S.ParamAddr });
const MasterParams = SmmuParams.extend({ mid: z.string().regex(/^[0-9]+$/).transform(Number).pipe(z.number().max(255)) });

/** The hardware view: SMMUs, context banks, fault registers, stalls, the MMIO window and master-addressed access. */
export const hardwareRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get('/smmus', { schema: { tags: ['hardware'], response: { 200: S.SmmusResponse } } }, async (req) => req.iommuSession.soc.smmus.map(smmuView));

  app.get('/smmus/:smmu/contexts/:ctx', { schema: { tags: ['hardware'], params: CtxParams, response: { 200: S.ContextResponse } } }, async (req) => {
    const soc = req.iommuSession.soc;
    const smmu = soc.smmu(req.params.smmu);
    return contextView(smmu, soc.context(smmu, req.params.ctx));
  });

  app.patch('/smmus/:smmu/contexts/:ctx', { schema: { tags: ['hardware'], params: CtxParams, body: S.PatchContextBody, response: { 200: S.ContextResponse } } }, async (req) => {
    const s = req.iommuSession;
    const smmu = s.soc.smmu(req.params.smmu);
    const bank = s.soc.context(smmu, req.params.ctx);
    return s.mutate(actor(req), () => {
      if (req.body.faultMode !== undefined) bank.faultMode = req.body.faultMode;
      if (req.body.faultInterrupt !== undefined) bank.faultInterrupt = req.body.faultInterrupt;
      // An attached context takes the new setting at once, as a driver rewriting ACTLR would.
      if (bank.domain) {
        bank.ACTLR = ((bank.ACTLR & ~(ACTLR_CFCFG | ACTLR_CFEIE)) | (bank.faultMode === 'stall' ? ACTLR_CFCFG : 0) | (bank.faultInterrupt ? ACTLR_CFEIE : 0)) >>> 0;
      }
      s.bus.emit({ type: 'context', action: 'configure', smmu: smmu.name, context: bank.index, device: bank.name, domain: bank.domain, faultMode: bank.faultMode, faultInterrupt: bank.faultInterrupt });
      return contextView(smmu, bank);
    });
  });

  app.post('/smmus/:smmu/contexts/:ctx/clear-fault', { schema: { tags: ['hardware'], params: CtxParams, body: S.ClearFaultBody, response: { 200: S.ContextResponse } } }, async (req) => {
    const s = req.iommuSession;
    const smmu = s.soc.smmu(req.params.smmu);
    const bank = s.soc.context(smmu, req.params.ctx);
    const value = req.body?.value ?? bank.FSR;
    return s.mutate(actor(req), () => {
      const old = bank.FSR;
      writeRegister(smmu, (bank.index << 12) | FSR, value, s.bus);
      s.bus.emit({ type: 'context', action: 'clear-fault', smmu: smmu.name, context: bank.index, device: bank.name, domain: bank.domain, old: hex(old), fsr: hex(bank.FSR) });
      return contextView(smmu, bank);
    });
  });

  app.post('/smmus/:smmu/contexts/:ctx/resume', { schema: { tags: ['hardware'], params: CtxParams, body: S.ResumeBody, response: { 200: S.AccessResponse } } }, async (req) => {
    const s = req.iommuSession;
    const smmu = s.soc.smmu(req.params.smmu);
    const bank = s.soc.context(smmu, req.params.ctx);
    return accessView(s.mutate(actor(req), () => smmu.resume(bank, req.body.stall, req.body.action)));
  });

  app.post('/smmus/:smmu/contexts/:ctx/inject-fault', { schema: { tags: ['hardware'], params: CtxParams, body: S.InjectFaultBody, response: { 200: S.ContextResponse } } }, async (req) => {
    const s = req.iommuSession;
    const smmu = s.soc.smmu(req.params.smmu);
    const bank = s.soc.context(smmu, req.params.ctx);
    return s.mutate(actor(req), () => {
      bank.injected = req.body.kind;
      s.bus.emit({ type: 'context', action: 'inject-fault', smmu: smmu.name, context: bank.index, device: bank.name, domain: bank.domain, kind: req.body.kind });
      return contextView(smmu, bank);
    });
  });

  app.get('/smmus/:smmu/mmio/:offset', { schema: { tags: ['mmio'], params: MmioParams, response: { 200: S.MmioResponse } } }, async (req) => {
    const smmu = req.iommuSession.soc.smmu(req.params.smmu);
    const { name } = decodeOffset(smmu, req.params.offset);
    return { offset: hex(req.params.offset), register: name, value: hex(readRegister(smmu, req.params.offset)) };
  });

  app.put('/smmus/:smmu/mmio/:offset', { schema: { tags: ['mmio'], params: MmioParams, body: S.MmioWriteBody, response: { 200: S.MmioResponse } } }, async (req) => {
    const s = req.iommuSession;
    const smmu = s.soc.smmu(req.params.smmu);
    if (req.body.value > 0xffffffff) throw outOfRange(req.body.value);
    return s.mutate(actor(req), () => {
      const w = writeRegister(smmu, req.params.offset, req.body.value, s.bus);
      return { offset: hex(req.params.offset), register: w.name, value: hex(w.value) };
    });
  });

  app.post('/smmus/:smmu/mmio', { schema: { tags: ['mmio'], params: SmmuParams, body: S.MmioBatchBody, response: { 200: S.MmioBatchResponse } } }, async (req) => {
    const s = req.iommuSession;
    const smmu = s.soc.smmu(req.params.smmu);
    const ops = req.body.ops;
    checkBatch(ops.length, app.iommudOptions.limits.maxBatchOps);
    // Validate every op before any side effect: a malformed op refuses the whole sequence.
    ops.forEach((op, i) => {
      decodeOffset(smmu, op.offset);
      if (op.op === 'write' && (op.value === undefined || op.value > 0xffffffff)) throw outOfRange(op.value ?? -1, i);
    });
    return s.mutate(actor(req), () => ({
      results: ops.map((op) => {
        if (op.op === 'read') {
          const { name } = decodeOffset(smmu, op.offset);
          return { offset: hex(op.offset), register: name, value: hex(readRegister(smmu, op.offset)) };
        }
        const w = writeRegister(smmu, op.offset, op.value!, s.bus);
        return { offset: hex(op.offset), register: w.name, value: hex(w.value) };
      }),
    }));
  });

  app.post('/smmus/:smmu/masters/:mid/access', { schema: { tags: ['mmio'], params: MasterParams, body: S.AccessBody, response: { 200: S.AccessResponse } } }, async (req) => {
    const s = req.iommuSession;
    const smmu = s.soc.smmu(req.params.smmu);
    const bank = smmu.bankOfMid(req.params.mid);
    if (!bank) throw new IommuError('NOT_FOUND', `MID ${req.params.mid} routes to no bank`, { mid: req.params.mid });
    const b = req.body;
    const data = b.data !== undefined ? Buffer.from(b.data, 'base64') : undefined;
    const req2 = accessRequest(b.iova, b.access, b.priv, req.params.mid, b.size, data);
    return accessView(s.mutate(actor(req), () => smmu.transfer(bank, req2)));
  });
};

function outOfRange(value: number, op?: number): IommuError {
  return new IommuError('OUT_OF_RANGE', 'a register value is 32 bits', { value, ...(op !== undefined ? { op } : {}) });
}

/** Checks a device-access body in the API's order (range after shape) and builds the transfer request. */
export function accessRequest(iova: number, access: 'read' | 'write' | 'exec', priv: boolean | undefined, mid: number, size: number | undefined, data: Uint8Array | undefined): TransferRequest {
  if (data !== undefined && access !== 'write') throw new IommuError('BAD_REQUEST', 'data goes with a write access', { access });
  if (data !== undefined && size !== undefined && size !== data.length) {
    throw new IommuError('BAD_REQUEST', 'size disagrees with the length of data', { size, dataLength: data.length });
  }
  if (data !== undefined && data.length === 0) throw new IommuError('BAD_REQUEST', 'data is empty');
  const len = data?.length ?? size ?? 1;
  if (iova > 0xffffffff || iova + len > 2 ** 32) throw new IommuError('OUT_OF_RANGE', 'iova + size must lie within the 32-bit space', { iova, size: len });
  return { iova, access: ACCESS_NAMES.indexOf(access), priv: priv ?? false, mid, size: data ? 0 : (size ?? 0), data };
}
