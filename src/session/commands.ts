/**
 * Every state change of a session as data: routes, the event socket, timers and journal replay all go through
 * execute(), so a session is exactly the fold of its commands (the journal, the trace, restore and replay).
 */
import { IommuError, hex } from '../errors.js';
import { ACCESS_NAMES, type ContextBank } from '../hw/context.js';
import type { HwAccessResult, HwContext, IommuInstance, TransferRequest } from '../hw/family.js';
import { MsmSmmu } from '../hw/msm/index.js';
import { OUTCOME_OK, OUTCOME_STALLED, TLB_STATE_NAMES } from '../hw/smmu.js';
import {
  ITEM_FLAG_STALE,
  ITEM_FLAG_UNBACKED,
  OP_MMIO_READ,
  OP_MMIO_WRITE,
  OP_READ,
  OP_TRANSLATE_EXEC,
  OP_TRANSLATE_READ,
  OP_WRITE,
  REPLY_HEADER,
  REPLY_ITEM,
  replyHeader,
  STREAM_MAX_BYTES,
} from '../api/stream.js';

const STATUS_BAD_OFFSET = 8;
import type { BatchOp } from '../iommu/iommu.js';
import { protFromNames } from '../pgtable/desc.js';
import type { DmaDirection, DmaMode } from '../dma/dma.js';
import type { Session } from './session.js';

type Ctx = { smmu: string; ctx: string };
type AccessArgs = { iova: number; access: 'read' | 'write' | 'exec'; priv?: boolean; mid?: number; size?: number; data?: string };

export type Command =
  | { op: 'domain-alloc'; for?: string; pgsizes?: number[]; flushPolicy?: 'strict' | 'deferred'; partialUnmap?: 'split' | 'refuse'; label?: string | null }
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
  /** A CPU load (recorded only in sessions with a CPU cache, where a load changes cache state). */
  | { op: 'memory-read'; paddr: number; size: number }
  | { op: 'cache-maintain'; action: 'clean' | 'invalidate' | 'flush'; paddr: number; size: number }
  | { op: 'dma-config'; device: string; flushPolicy?: 'strict' | 'deferred'; dmaLimit?: number; mode?: DmaMode }
  | { op: 'dma-map'; device: string; paddr: number; size: number; dir: DmaDirection }
  | { op: 'dma-map-sg'; device: string; segments: Array<{ paddr: number; size: number }>; dir: DmaDirection }
  | { op: 'dma-unmap'; device: string; dmaAddr: number; size: number; dir: DmaDirection }
  | { op: 'dma-sync'; device: string; dmaAddr: number; size: number; offset?: number; for: 'cpu' | 'device'; dir?: DmaDirection }
  | { op: 'dma-flush'; device: string }
  /** A binary-stream request (src/api/stream.ts); item lists as base64 of little-endian u32 arrays. */
  | { op: 'stream'; device: string; sop: number; priv: boolean; mid: number; iovas: string; lengths?: string; data?: string; values?: string };

export type CommandOf<K extends Command['op']> = Extract<Command, { op: K }>;

function u32s(b64: string): Uint32Array {
  const b = Buffer.from(b64, 'base64');
  const out = new Uint32Array(b.length >>> 2);
  for (let i = 0; i < out.length; i++) out[i] = b.readUInt32LE(4 * i);
  return out;
}

const FAULT_STATUS: Record<string, number> = { translation: 1, permission: 2, 'access-flag': 3, external: 4, 'multi-hit': 5, 'tlb-miss': 6 };

/** MMIO over the stream: each item one register of the device's SMMU; a bad offset refuses that item only. */
function streamMmio(smmu: IommuInstance, cmd: CommandOf<'stream'>, offsets: Uint32Array): Uint8Array {
  const n = offsets.length;
  const values = cmd.sop === OP_MMIO_WRITE ? u32s(cmd.values ?? '') : null;
  if (values && values.length !== n) throw new IommuError('BAD_REQUEST', 'one value per offset');
  const buf = new Uint8Array(REPLY_HEADER + REPLY_ITEM * n);
  const dv = replyHeader(buf, cmd.sop, 0, n);
  for (let i = 0; i < n; i++) {
    const o = REPLY_HEADER + REPLY_ITEM * i;
    try {
      const v = values ? smmu.writeRegister(offsets[i]!, values[i]!).value : smmu.readRegister(offsets[i]!);
      dv.setUint32(o + 4, v, true);
    } catch (e) {
      if (!(e instanceof IommuError)) throw e;
      dv.setUint8(o, STATUS_BAD_OFFSET);
    }
  }
  return buf;
}

/**
 * One binary-stream request: the reply frame with request id 0 (the caller stamps its id). Translations go
 * through the same transaction path as every other front end; faults raise the same events.
 */
function streamBatch(smmu: IommuInstance, bank: HwContext, cmd: CommandOf<'stream'>): Uint8Array {
  const iovas = u32s(cmd.iovas);
  const n = iovas.length;
  const access = cmd.sop === OP_WRITE ? 1 : cmd.sop >= OP_TRANSLATE_READ && cmd.sop <= OP_TRANSLATE_EXEC ? cmd.sop - OP_TRANSLATE_READ : 0;
  const mid = cmd.mid === 0xff ? smmu.defaultMid(bank, access) : cmd.mid;
  if (cmd.sop >= OP_TRANSLATE_READ && cmd.sop <= OP_TRANSLATE_EXEC) {
    const buf = new Uint8Array(REPLY_HEADER + REPLY_ITEM * n);
    replyHeader(buf, cmd.sop, 0, n);
    // Items start at byte 12 of a fresh buffer: 4-byte aligned, so two u32 stores per item.
    const words = new Uint32Array(buf.buffer, REPLY_HEADER, 2 * n);
    for (let i = 0; i < n; i++) {
      const r = smmu.translate(bank, iovas[i]!, access, cmd.priv, mid);
      if (r.outcome === OUTCOME_OK) {
        words[2 * i] = r.tlb << 8 | (r.stale ? ITEM_FLAG_STALE << 16 : 0);
        words[2 * i + 1] = r.paddr;
      } else if (r.outcome === OUTCOME_STALLED) {
        words[2 * i] = 7 | (r.tlb << 8);
        words[2 * i + 1] = Number(r.stall!.slice(6));
      } else {
        smmu.notifyFault(bank, r.fault!);
        words[2 * i] = FAULT_STATUS[r.fault!.kind]! | (r.tlb << 8);
        words[2 * i + 1] = 0;
      }
    }
    return buf;
  }
  if (cmd.sop === OP_MMIO_READ || cmd.sop === OP_MMIO_WRITE) return streamMmio(smmu, cmd, iovas);
  const lengths = u32s(cmd.lengths ?? '');
  if (lengths.length !== n) throw new IommuError('BAD_REQUEST', 'one length per iova');
  let total = 0;
  for (let i = 0; i < n; i++) total += lengths[i]!;
  if (total > STREAM_MAX_BYTES) {
    throw new IommuError('PAYLOAD_TOO_LARGE', `a stream frame moves at most ${STREAM_MAX_BYTES} bytes (as POST .../access)`, { limit: STREAM_MAX_BYTES, got: total });
  }
  const data = cmd.data !== undefined ? Buffer.from(cmd.data, 'base64') : undefined;
  const results: HwAccessResult[] = [];
  let off = 0;
  let readBytes = 0;
  for (let i = 0; i < n; i++) {
    const len = lengths[i]!;
    const req = transferOf({ iova: iovas[i]!, access: cmd.sop === OP_WRITE ? 'write' : 'read', priv: cmd.priv, mid, ...(cmd.sop === OP_WRITE ? {} : { size: len }) }, mid);
    if (cmd.sop === OP_WRITE) req.data = data!.subarray(off, off + len);
    off += len;
    const r = smmu.transfer(bank, req);
    results.push(r);
    if (cmd.sop === OP_READ) readBytes += len;
  }
  const buf = new Uint8Array(REPLY_HEADER + REPLY_ITEM * n + (cmd.sop === OP_READ ? readBytes : 0));
  const dv = replyHeader(buf, cmd.sop, 0, n);
  let d = REPLY_HEADER + REPLY_ITEM * n;
  results.forEach((r, i) => {
    const o = REPLY_HEADER + REPLY_ITEM * i;
    if (r.outcome === 'ok') {
      dv.setUint8(o + 1, TLB_STATE_NAMES.indexOf(r.tlb));
      dv.setUint16(o + 2, (r.stale ? ITEM_FLAG_STALE : 0) | (r.unbacked ? ITEM_FLAG_UNBACKED : 0), true);
      dv.setUint32(o + 4, r.paddr, true);
      if (r.data) buf.set(r.data, d);
    } else if (r.outcome === 'stalled') {
      dv.setUint8(o, 7);
      dv.setUint32(o + 4, Number(r.stall.slice(6)), true);
    } else if (r.outcome === 'fault') dv.setUint8(o, FAULT_STATUS[r.fault.kind]!);
    if (cmd.sop === OP_READ) d += lengths[i]!;
  });
  return buf;
}

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

/** CPU loads and stores reach RAM only (API.md: over 4 MiB per request is PAYLOAD_TOO_LARGE). */
export function checkRam(s: Session, paddr: number, size: number): void {
  if (size > 4 * 1024 * 1024) throw new IommuError('PAYLOAD_TOO_LARGE', 'at most 4194304 bytes per request', { size });
  if (size <= 0 || paddr > 0xffffffff || paddr + size > 2 ** 32 || !s.soc.mem.isRamRange(paddr, size)) {
    throw new IommuError('OUT_OF_RANGE', `[${hex(paddr)}, +${size}) is not RAM of this profile`, { paddr: hex(paddr), size });
  }
}

function outOfRange32(value: number | undefined, op?: number): IommuError {
  return new IommuError('OUT_OF_RANGE', 'a register value is 32 bits', { ...(value !== undefined ? { value: hex(value) } : {}), ...(op !== undefined ? { op } : {}) });
}

/** Operations only the MSM SMMU has (stall, resume, fault injection, master routing): BAD_REQUEST elsewhere. */
function msmOnly(smmu: IommuInstance, what: string): MsmSmmu {
  if (!(smmu instanceof MsmSmmu)) {
    throw new IommuError('BAD_REQUEST', `${what} is an msm operation; ${smmu.name} is ${smmu.family}`, { smmu: smmu.name, family: smmu.family });
  }
  return smmu;
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
      return iommu.domainAlloc({ for: cmd.for, pgsizes: cmd.pgsizes, flushPolicy: cmd.flushPolicy, partialUnmap: cmd.partialUnmap, label: cmd.label ?? null });
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
      if (smmu instanceof MsmSmmu) (bank as ContextBank).setFaultSettings(cmd.faultMode, cmd.faultInterrupt);
      else if (cmd.faultMode === 'stall' || cmd.faultInterrupt === false) msmOnly(smmu, cmd.faultMode === 'stall' ? 'faultMode "stall"' : 'faultInterrupt');
      const f = smmu.faultSettings(bank);
      const fs = f.settings ?? f;
      bus.emit({ type: 'context', action: 'configure', smmu: smmu.name, context: bank.index, device: bank.name, domain: bank.domain, faultMode: fs.faultMode, faultInterrupt: fs.faultInterrupt });
      return { smmu, bank };
    }
    case 'clear-fault': {
      const { smmu, bank } = bankOf(cmd);
      if (cmd.value !== undefined && cmd.value > 0xffffffff) throw outOfRange32(cmd.value);
      const r = smmu.clearFault(bank, cmd.value);
      bus.emit({ type: 'context', action: 'clear-fault', smmu: smmu.name, context: bank.index, device: bank.name, domain: bank.domain, register: r.register, old: hex(r.old), [r.register === 'FSR' ? 'fsr' : 'value']: hex(r.value) });
      return { smmu, bank };
    }
    case 'resume': {
      const { smmu, bank } = bankOf(cmd);
      return msmOnly(smmu, 'resume').resume(bank as ContextBank, cmd.stall, cmd.action);
    }
    case 'inject-fault': {
      const { smmu, bank } = bankOf(cmd);
      msmOnly(smmu, 'inject-fault');
      (bank as ContextBank).injected = cmd.kind;
      bus.emit({ type: 'context', action: 'inject-fault', smmu: smmu.name, context: bank.index, device: bank.name, domain: bank.domain, kind: cmd.kind });
      return { smmu, bank };
    }
    case 'mmio': {
      const smmu = soc.smmu(cmd.smmu);
      // Every op is checked before any side effect: a malformed op refuses the whole sequence.
      cmd.ops.forEach((op, i) => {
        smmu.registerName(op.offset);
        if (op.op === 'write' && (op.value === undefined || op.value > 0xffffffff)) throw outOfRange32(op.value, i);
      });
      return cmd.ops.map((op) => {
        if (op.op === 'read') return { offset: op.offset, name: smmu.registerName(op.offset), value: smmu.readRegister(op.offset) };
        const w = smmu.writeRegister(op.offset, op.value!);
        return { offset: op.offset, name: w.name, value: w.value };
      });
    }
    case 'access': {
      const { smmu, bank } = soc.device(cmd.device);
      return smmu.transfer(bank, transferOf(cmd, smmu.defaultMid(bank, ACCESS_NAMES.indexOf(cmd.access))));
    }
    case 'master-access': {
      const smmu = msmOnly(soc.smmu(cmd.smmu), 'master access');
      const bank = smmu.bankOfMid(cmd.mid);
      if (!bank) throw new IommuError('NOT_FOUND', `MID ${cmd.mid} routes to no bank`, { mid: cmd.mid });
      return smmu.transfer(bank, transferOf(cmd, cmd.mid));
    }
    case 'access-batch': {
      const { smmu, bank } = soc.device(cmd.device);
      // Every item is checked before the first transaction: a malformed item refuses the whole request.
      const mid = smmu.defaultMid(bank, ACCESS_NAMES.indexOf(cmd.access));
      const reqs = cmd.iovas.map((iova) => transferOf({ iova, access: cmd.access, priv: cmd.priv, mid: cmd.mid }, mid));
      smmu.checkStallRoom?.(bank, reqs.length);
      return reqs.map((r): HwAccessResult => smmu.transfer(bank, r));
    }
    case 'buffer-alloc': {
      const b = pools.alloc(cmd.size, cmd.pools, cmd.align);
      // New buffers read as zeros from the CPU too: stale lines of the range go (without a write-back).
      s.cache?.discard(b.paddr, b.size);
      bus.emit({ type: 'buffer', action: 'alloc', paddr: hex(b.paddr), size: b.size, pool: b.pool });
      return b;
    }
    case 'buffer-free': {
      const b = pools.free(cmd.paddr);
      bus.emit({ type: 'buffer', action: 'free', paddr: hex(b.paddr), size: b.size, pool: b.pool });
      return b;
    }
    case 'memory-write': {
      const data = Buffer.from(cmd.data, 'base64');
      if (s.cache) s.cache.store(cmd.paddr, data);
      else soc.mem.writeBytes(cmd.paddr, data);
      bus.emit({ type: 'memory', action: 'write', paddr: hex(cmd.paddr), size: data.length });
      return undefined;
    }
    case 'memory-read': {
      checkRam(s, cmd.paddr, cmd.size);
      return s.cache ? s.cache.load(cmd.paddr, cmd.size) : soc.mem.readBytes(cmd.paddr, cmd.size);
    }
    case 'cache-maintain': {
      if (cmd.size <= 0 || cmd.paddr > 0xffffffff || cmd.paddr + cmd.size > 2 ** 32) {
        throw new IommuError('OUT_OF_RANGE', 'paddr + size must lie within the 32-bit space, size > 0', { paddr: hex(cmd.paddr), size: cmd.size });
      }
      const c = s.cache;
      const lines = !c ? 0 : cmd.action === 'clean' ? c.clean(cmd.paddr, cmd.size) : cmd.action === 'invalidate' ? c.invalidate(cmd.paddr, cmd.size) : c.flush(cmd.paddr, cmd.size);
      bus.emit({ type: 'cache', action: cmd.action, paddr: hex(cmd.paddr), size: cmd.size, lines });
      return { lines };
    }
    case 'dma-config': {
      const st = dma.configure(cmd.device, cmd);
      bus.emit({ type: 'dma', action: 'config', device: cmd.device, domain: st.domain?.id ?? null, mode: st.mode, flushPolicy: st.flushPolicy, dmaLimit: hex(st.dmaLimit) });
      return st;
    }
    case 'dma-map':
    case 'dma-map-sg': {
      const m = cmd.op === 'dma-map' ? dma.map(cmd.device, cmd.paddr, cmd.size, cmd.dir) : dma.mapSg(cmd.device, cmd.segments, cmd.dir);
      bus.emit({ type: 'dma', action: cmd.op === 'dma-map' ? 'map' : 'map-sg', device: cmd.device, domain: dma.devices.get(cmd.device)!.domain?.id ?? null, dmaAddr: hex(m.dmaAddr), size: m.size, dir: m.dir });
      return m;
    }
    case 'dma-unmap': {
      const m = dma.unmap(cmd.device, cmd.dmaAddr, cmd.size, cmd.dir);
      bus.emit({ type: 'dma', action: 'unmap', device: cmd.device, domain: dma.devices.get(cmd.device)?.domain?.id ?? null, dmaAddr: hex(m.dmaAddr), size: m.size, dir: m.dir });
      return m;
    }
    case 'dma-sync': {
      const m = dma.sync(cmd.device, cmd.dmaAddr, cmd.size, cmd.offset ?? 0, cmd.for, cmd.dir);
      bus.emit({ type: 'dma', action: 'sync', device: cmd.device, domain: dma.devices.get(cmd.device)!.domain?.id ?? null, dmaAddr: hex(cmd.dmaAddr + (cmd.offset ?? 0)), size: cmd.size, for: cmd.for });
      return m;
    }
    case 'dma-flush': {
      const st = dma.devices.get(cmd.device);
      if (st) dma.flushQueue(st);
      return undefined;
    }
    case 'stream': {
      const { smmu, bank } = soc.device(cmd.device);
      return streamBatch(smmu, bank, cmd);
    }
    default:
      throw new IommuError('BAD_REQUEST', `unknown command ${(cmd as { op?: unknown }).op}`);
  }
}
