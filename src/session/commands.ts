/**
 * Every state change of a session as data: routes, the event socket, timers and journal replay all go through
 * execute(), so a session is exactly the fold of its commands (the journal, the trace, restore and replay).
 */
import { IommuError } from '../errors.js';
import { ACCESS_NAMES } from '../hw/context.js';
import { decodeOffset, readRegister, writeRegister } from '../hw/mmio.js';
import { ACTLR_CFCFG, ACTLR_CFEIE, FSR } from '../hw/regs.js';
import type { AccessResult, TransferRequest } from '../hw/smmu.js';
import type { BatchOp } from '../iommu/iommu.js';
import { protFromNames } from '../pgtable/desc.js';
import type { DmaDirection } from '../dma/dma.js';
import type { Session } from './session.js';

type Ctx = { smmu: string; ctx: string };
type AccessArgs = { iova: number; access: 'read' | 'write' | 'exec'; priv?: boolean; mid?: number; size?: number; data?: string };

export type Command =
  | { op: 'domain-alloc'; pgsizes?: number[]; flushPolicy?: 'strict' | 'deferred'; partialUnmap?: 'split' | 'refuse'; label?: string | null }
  | { op: 'domain-free'; did: string }
  | { op: 'attach'; did: string; device: string; replace?: boolean }
  | { op: 'detach'; did: string; device: string }
  | { op: 'map'; did: string; iova: number; paddr: number; size: number; prot: string[] }
  | { op: 'unmap'; did: string; iova: number; size: number }
  | { op: 'batch'; did: string; ops: Array<{ op: 'map'; iova: number; paddr: number; size: number; prot: string[] } | { op: 'unmap'; iova: number; size: number }> }
  | { op: 'flush'; did: string; iova?: number; size?: number }
  | { op: 'sync'; did: string }
  | ({ op: 'context-config'; faultMode?: 'terminate' | 'stall'; faultInterrupt?: boolean } & Ctx)
  | ({ op: 'clear-fault'; value?: number } & Ctx)
  | ({ op: 'resume'; stall: string; action: 'retry' | 'terminate' | 'timeout' } & Ctx)
  | ({ op: 'inject-fault'; kind: 'external' | 'multi-hit' | 'tlb-miss' } & Ctx)
  | { op: 'mmio'; smmu: string; ops: Array<{ op: 'read' | 'write'; offset: number; value?: number }> }
  | ({ op: 'access'; device: string } & AccessArgs)
  | ({ op: 'master-access'; smmu: string; mid: number } & AccessArgs)
  | { op: 'access-batch'; device: string; access: 'read' | 'write' | 'exec'; priv?: boolean; mid?: number; iovas: number[] }
  | { op: 'buffer-alloc'; size: number; pools?: string[]; align?: number }
  | { op: 'buffer-free'; paddr: number }
  | { op: 'memory-write'; paddr: number; data: string }
  | { op: 'dma-config'; device: string; flushPolicy?: 'strict' | 'deferred'; dmaLimit?: number }
  | { op: 'dma-map'; device: string; paddr: number; size: number; dir: DmaDirection }
  | { op: 'dma-map-sg'; device: string; segments: Array<{ paddr: number; size: number }>; dir: DmaDirection }
  | { op: 'dma-unmap'; device: string; dmaAddr: number; size: number; dir: DmaDirection }
  | { op: 'dma-sync'; device: string; dmaAddr: number; size: number; offset?: number; for: 'cpu' | 'device'; dir?: DmaDirection }
  | { op: 'dma-flush'; device: string };

export type CommandOf<K extends Command['op']> = Extract<Command, { op: K }>;

/** Checks a device-access request in the API's order (range after shape) and builds the transfer. */
export function transferOf(a: AccessArgs, defaultMid: number): TransferRequest {
  const data = a.data !== undefined ? Buffer.from(a.data, 'base64') : undefined;
  if (data !== undefined && a.access !== 'write') throw new IommuError('BAD_REQUEST', 'data goes with a write access', { access: a.access });
  if (data !== undefined && a.size !== undefined && a.size !== data.length) {
    throw new IommuError('BAD_REQUEST', 'size disagrees with the length of data', { size: a.size, dataLength: data.length });
  }
  if (data !== undefined && data.length === 0) throw new IommuError('BAD_REQUEST', 'data is empty');
  const len = data?.length ?? a.size ?? 1;
  if (a.iova > 0xffffffff || a.iova + len > 2 ** 32) throw new IommuError('OUT_OF_RANGE', 'iova + size must lie within the 32-bit space', { iova: a.iova, size: len });
  return { iova: a.iova, access: ACCESS_NAMES.indexOf(a.access), priv: a.priv ?? false, mid: a.mid ?? defaultMid, size: data ? 0 : (a.size ?? 0), data };
}

function outOfRange32(value: number, op?: number): IommuError {
  return new IommuError('OUT_OF_RANGE', 'a register value is 32 bits', { value, ...(op !== undefined ? { op } : {}) });
}

/** Applies one command to a session; throws IommuError (changing nothing) on a refusal. */
export function execute(s: Session, cmd: Command): unknown {
  const { soc, iommu, dma, pools, bus } = s;
  const bankOf = (c: Ctx) => {
    const smmu = soc.smmu(c.smmu);
    return { smmu, bank: soc.context(smmu, c.ctx) };
  };
  switch (cmd.op) {
    case 'domain-alloc':
      return iommu.domainAlloc({ pgsizes: cmd.pgsizes, flushPolicy: cmd.flushPolicy, partialUnmap: cmd.partialUnmap, label: cmd.label ?? null });
    case 'domain-free':
      return iommu.domainFree(cmd.did);
    case 'attach':
      return iommu.attach(cmd.did, cmd.device, cmd.replace ?? false);
    case 'detach':
      return iommu.detach(cmd.did, cmd.device);
    case 'map':
      return iommu.map(cmd.did, cmd.iova, cmd.paddr, cmd.size, protFromNames(cmd.prot));
    case 'unmap':
      return iommu.unmap(cmd.did, cmd.iova, cmd.size);
    case 'batch': {
      const ops: BatchOp[] = cmd.ops.map((o) => (o.op === 'map' ? { ...o, prot: protFromNames(o.prot) } : o));
      return iommu.batch(cmd.did, ops);
    }
    case 'flush':
      if (cmd.iova !== undefined && (cmd.iova > 0xffffffff || cmd.iova + (cmd.size ?? 0x1000) > 2 ** 32 || cmd.size === 0)) {
        throw new IommuError('OUT_OF_RANGE', 'iova + size must lie within the 32-bit space, size > 0', { iova: cmd.iova, size: cmd.size });
      }
      return iommu.flush(cmd.did, cmd.iova, cmd.iova !== undefined ? (cmd.size ?? 0x1000) : undefined);
    case 'sync':
      return iommu.sync(cmd.did);
    case 'context-config': {
      const { smmu, bank } = bankOf(cmd);
      if (cmd.faultMode !== undefined) bank.faultMode = cmd.faultMode;
      if (cmd.faultInterrupt !== undefined) bank.faultInterrupt = cmd.faultInterrupt;
      // An attached context takes the new setting at once, as a driver rewriting ACTLR would.
      if (bank.domain) {
        bank.ACTLR = ((bank.ACTLR & ~(ACTLR_CFCFG | ACTLR_CFEIE)) | (bank.faultMode === 'stall' ? ACTLR_CFCFG : 0) | (bank.faultInterrupt ? ACTLR_CFEIE : 0)) >>> 0;
      }
      bus.emit({ type: 'context', action: 'configure', smmu: smmu.name, context: bank.index, device: bank.name, domain: bank.domain, faultMode: bank.faultMode, faultInterrupt: bank.faultInterrupt });
      return { smmu, bank };
    }
    case 'clear-fault': {
      const { smmu, bank } = bankOf(cmd);
      const old = bank.FSR;
      writeRegister(smmu, (bank.index << 12) | FSR, cmd.value ?? bank.FSR, bus);
      bus.emit({ type: 'context', action: 'clear-fault', smmu: smmu.name, context: bank.index, device: bank.name, domain: bank.domain, old: '0x' + old.toString(16), fsr: '0x' + bank.FSR.toString(16) });
      return { smmu, bank };
    }
    case 'resume': {
      const { smmu, bank } = bankOf(cmd);
      return smmu.resume(bank, cmd.stall, cmd.action);
    }
    case 'inject-fault': {
      const { smmu, bank } = bankOf(cmd);
      bank.injected = cmd.kind;
      bus.emit({ type: 'context', action: 'inject-fault', smmu: smmu.name, context: bank.index, device: bank.name, domain: bank.domain, kind: cmd.kind });
      return { smmu, bank };
    }
    case 'mmio': {
      const smmu = soc.smmu(cmd.smmu);
      // Every op is checked before any side effect: a malformed op refuses the whole sequence.
      cmd.ops.forEach((op, i) => {
        decodeOffset(smmu, op.offset);
        if (op.op === 'write' && (op.value === undefined || op.value > 0xffffffff)) throw outOfRange32(op.value ?? -1, i);
      });
      return cmd.ops.map((op) => {
        if (op.op === 'read') return { offset: op.offset, name: decodeOffset(smmu, op.offset).name, value: readRegister(smmu, op.offset) };
        const w = writeRegister(smmu, op.offset, op.value!, bus);
        return { offset: op.offset, name: w.name, value: w.value };
      });
    }
    case 'access': {
      const { smmu, bank } = soc.device(cmd.device);
      return smmu.transfer(bank, transferOf(cmd, bank.mids[0] ?? 0));
    }
    case 'master-access': {
      const smmu = soc.smmu(cmd.smmu);
      const bank = smmu.bankOfMid(cmd.mid);
      if (!bank) throw new IommuError('NOT_FOUND', `MID ${cmd.mid} routes to no bank`, { mid: cmd.mid });
      return smmu.transfer(bank, transferOf(cmd, cmd.mid));
    }
    case 'access-batch': {
      const { smmu, bank } = soc.device(cmd.device);
      // Every item is checked before the first transaction: a malformed item refuses the whole request.
      const reqs = cmd.iovas.map((iova) => transferOf({ iova, access: cmd.access, priv: cmd.priv, mid: cmd.mid }, bank.mids[0] ?? 0));
      return reqs.map((r): AccessResult => smmu.transfer(bank, r));
    }
    case 'buffer-alloc':
      return pools.alloc(cmd.size, cmd.pools, cmd.align);
    case 'buffer-free':
      return pools.free(cmd.paddr);
    case 'memory-write':
      return soc.mem.writeBytes(cmd.paddr, Buffer.from(cmd.data, 'base64'));
    case 'dma-config':
      return dma.configure(cmd.device, cmd);
    case 'dma-map':
      return dma.map(cmd.device, cmd.paddr, cmd.size, cmd.dir);
    case 'dma-map-sg':
      return dma.mapSg(cmd.device, cmd.segments, cmd.dir);
    case 'dma-unmap':
      return dma.unmap(cmd.device, cmd.dmaAddr, cmd.size, cmd.dir);
    case 'dma-sync':
      return dma.sync(cmd.device, cmd.dmaAddr, cmd.size, cmd.offset ?? 0, cmd.for, cmd.dir);
    case 'dma-flush': {
      const st = dma.devices.get(cmd.device);
      if (st) dma.flushQueue(st);
      return undefined;
    }
    default:
      throw new IommuError('BAD_REQUEST', `unknown command ${(cmd as { op?: unknown }).op}`);
  }
}
