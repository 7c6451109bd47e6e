/**
 * Every state change of a session as data: routes, the event socket, timers and journal replay all go through
 * execute(), so a session is exactly the fold of its commands (the journal, the trace, restore and replay).
 */
import { IommuError, fail, hex, refusal } from '../errors.js';
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
import { z } from 'zod';
import { AccessKind, Base64, DmaDirection, PgSize, ProtFlag } from '../api/schemas.js';
import type { BatchOp } from '../iommu/iommu.js';
import { protFromNames } from '../pgtable/desc.js';
import type { Session } from './session.js';
import { CHUNK_SIZE } from '../memory/phys.js';

type Ctx = { smmu: string; ctx: string };
type AccessArgs = { iova: number; access: 'read' | 'write' | 'exec'; priv?: boolean; mid?: number; size?: number; data?: string };

/** CPU-side reads and writes of RAM are bounded (API.md): larger transfers take several requests. */
export const MEMORY_IO_LIMIT = 4 * 1024 * 1024;
/** One device access moves at most this many bytes (API.md's `size` bound). */
export const ACCESS_SIZE_LIMIT = 4 * 1024 * 1024;
/** Items per binary-stream request (a batch of 4096 is the benchmark's; 65536 keeps a frame under 1 MiB). */
export const STREAM_MAX_ITEMS = 65536;

// ---- the shape of every command ------------------------------------------------------------------------------
// execute() checks every command against this before it touches anything, whoever sent it: a route, the binary
// stream, a timer, journal restore or a trace someone wrote by hand. Shape only (types, integers, enums, string
// and list bounds); ranges are each command's own check (OUT_OF_RANGE, after shape, as the API orders them).
const Int = z.number().int(); // zod 4: safe integers only
/** An address or size: ranges (32-bit space, RAM) are checked by the command itself. */
const Addr = Int.nonnegative();
/** Names and ids are looked up, never parsed: any string is safe, but none is unbounded. */
const Name = z.string().max(1024);
const Mid = Int.min(0).max(255);
const CtxFields = { smmu: Name, ctx: Name };
const AccessFields = {
  iova: Addr,
  access: AccessKind,
  priv: z.boolean().optional(),
  mid: Mid.optional(),
  size: Int.min(1).max(ACCESS_SIZE_LIMIT).optional(),
  data: Base64.max(Math.ceil(ACCESS_SIZE_LIMIT / 3) * 4).optional(),
};
const MapOp = z.strictObject({ op: z.literal('map'), iova: Addr, paddr: Addr, size: Addr, prot: z.array(ProtFlag) });
const UnmapOp = z.strictObject({ op: z.literal('unmap'), iova: Addr, size: Addr });
const FlushPolicy = z.enum(['strict', 'deferred']);
const Segment = z.strictObject({ paddr: Addr, size: Addr });

export const CommandSchema = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('domain-alloc'), for: Name.optional(), pgsizes: z.array(PgSize).min(1).max(4).optional(), flushPolicy: FlushPolicy.optional(), partialUnmap: z.enum(['split', 'refuse']).optional(), label: z.string().max(128).nullish() }),
  z.strictObject({ op: z.literal('domain-free'), did: Name }),
  z.strictObject({ op: z.literal('attach'), did: Name, device: Name, replace: z.boolean().optional() }),
  z.strictObject({ op: z.literal('detach'), did: Name, device: Name }),
  MapOp.extend({ did: Name }),
  UnmapOp.extend({ did: Name }),
  z.strictObject({ op: z.literal('batch'), did: Name, ops: z.array(z.discriminatedUnion('op', [MapOp, UnmapOp])).min(1) }),
  z.strictObject({ op: z.literal('flush'), did: Name, iova: Addr.optional(), size: Addr.optional() }),
  z.strictObject({ op: z.literal('sync'), did: Name }),
  z.strictObject({ op: z.literal('context-config'), ...CtxFields, faultMode: z.enum(['terminate', 'stall']).optional(), faultInterrupt: z.boolean().optional() }),
  z.strictObject({ op: z.literal('clear-fault'), ...CtxFields, value: Addr.optional() }),
  // 'timeout' is the stall timer's own resume (a background command), recorded like any other.
  z.strictObject({ op: z.literal('resume'), ...CtxFields, stall: z.string().min(1).max(64), action: z.enum(['retry', 'terminate', 'timeout']) }),
  z.strictObject({ op: z.literal('inject-fault'), ...CtxFields, kind: z.enum(['external', 'multi-hit', 'tlb-miss']) }),
  z.strictObject({ op: z.literal('mmio'), smmu: Name, ops: z.array(z.strictObject({ op: z.enum(['read', 'write']), offset: Addr, value: Addr.optional() })).min(1) }),
  z.strictObject({ op: z.literal('access'), device: Name, ...AccessFields }),
  z.strictObject({ op: z.literal('master-access'), smmu: Name, ...AccessFields, mid: Mid }),
  z.strictObject({ op: z.literal('access-batch'), device: Name, access: AccessKind, priv: z.boolean().optional(), mid: Mid.optional(), iovas: z.array(Addr).min(1) }),
  z.strictObject({ op: z.literal('buffer-alloc'), size: Addr, pools: z.array(z.string().max(64)).min(1).max(16).optional(), align: Addr.optional() }),
  z.strictObject({ op: z.literal('buffer-free'), paddr: Addr }),
  // Its size bound is checkRam's (PAYLOAD_TOO_LARGE, as PUT /memory answers), not a shape error.
  z.strictObject({ op: z.literal('memory-write'), paddr: Addr, data: Base64 }),
  /** A CPU load (recorded only in sessions with a CPU cache, where a load changes cache state). */
  z.strictObject({ op: z.literal('memory-read'), paddr: Addr, size: Addr }),
  z.strictObject({ op: z.literal('cache-maintain'), action: z.enum(['clean', 'invalidate', 'flush']), paddr: Addr, size: Addr }),
  z.strictObject({ op: z.literal('dma-config'), device: Name, flushPolicy: FlushPolicy.optional(), dmaLimit: Addr.optional(), mode: z.enum(['iommu', 'direct']).optional() }),
  z.strictObject({ op: z.literal('dma-map'), device: Name, paddr: Addr, size: Addr, dir: DmaDirection }),
  z.strictObject({ op: z.literal('dma-map-sg'), device: Name, segments: z.array(Segment).min(1), dir: DmaDirection }),
  z.strictObject({ op: z.literal('dma-unmap'), device: Name, dmaAddr: Addr, size: Addr, dir: DmaDirection }),
  z.strictObject({ op: z.literal('dma-sync'), device: Name, dmaAddr: Addr, size: Addr, offset: Addr.optional(), for: z.enum(['cpu', 'device']), dir: DmaDirection.optional() }),
  z.strictObject({ op: z.literal('dma-flush'), device: Name }),
  /** A binary-stream request (src/api/stream.ts); item lists as base64 of little-endian u32 arrays. */
  z.strictObject({ op: z.literal('stream'), device: Name, sop: Int.min(OP_TRANSLATE_READ).max(OP_MMIO_WRITE), priv: z.boolean(), mid: Mid, iovas: z.string(), lengths: z.string().optional(), data: z.string().optional(), values: z.string().optional() }),
]);

export type Command = z.infer<typeof CommandSchema>;

/** The gate's check: zod's compiled form of CommandSchema (generated code, zod's parser for what it refuses). */
const CompiledCommandSchema = z.compile(CommandSchema);

/** BAD_REQUEST naming (the first few of) the fields a zod check refused in `what` (details.issues). */
export function shapeError(what: string, error: z.ZodError): IommuError {
  const issues = error.issues.slice(0, 8).map((i) => ({ path: '/' + i.path.map(String).join('/'), message: i.message }));
  return refusal('invalidInput', { what, issues });
}

/** The command, checked for shape; BAD_REQUEST naming the fields otherwise. */
export function checkCommand(cmd: unknown): Command {
  const r = CompiledCommandSchema.safeParse(cmd);
  if (r.success) return r.data;
  throw shapeError('command', r.error);
}

/** A list over the session's batch limit (maps, accesses, register ops per request). */
function checkBatch(n: number, limit: number): void {
  if (n > limit) fail('batchTooLarge', { limit, got: n });
}

/** [paddr, +size) must be RAM of the profile, and at most MEMORY_IO_LIMIT bytes (CPU-side reads and writes). */
export function checkRam(mem: { isRamRange(a: number, n: number): boolean }, paddr: number, size: number): void {
  if (size > MEMORY_IO_LIMIT) fail('memoryIoTooLarge', { limit: MEMORY_IO_LIMIT, size });
  if (size <= 0 || paddr > 0xffffffff || paddr + size > 2 ** 32 || !mem.isRamRange(paddr, size)) {
    fail('notRam', { paddr, size });
  }
}

/**
 * Refuses (LIMIT) a write that could take the emulated RAM the session or the daemon holds past its budget
 * (--max-ram-per-session, --max-ram). `bytes`: what the write can add to the RAM held, at most.
 */
export function checkRamBudget(s: Session, bytes: number): void {
  if (bytes <= 0) return;
  const held = s.soc.mem.bytesHeld;
  if (held + bytes > s.maxRam) {
    fail('ramBudgetSession', { limit: s.maxRam, held, bytes });
  }
  const ledger = s.ramLedger;
  if (ledger.held + bytes > ledger.limit) {
    fail('ramBudgetDaemon', { limit: ledger.limit, held: ledger.held, bytes });
  }
}

/**
 * A device write's bound for checkRamBudget: before translation its physical pages are unknown, so each item
 * counts the chunks its length can span, but never more than the RAM not yet held.
 */
function checkDeviceWriteBudget(s: Session, lengths: ArrayLike<number>): void {
  let chunks = 0;
  for (let i = 0; i < lengths.length; i++) chunks += Math.ceil(lengths[i]! / CHUNK_SIZE) + 1;
  const bytes = chunks * CHUNK_SIZE;
  const room = Math.min(s.maxRam - s.soc.mem.bytesHeld, s.ramLedger.limit - s.ramLedger.held);
  checkRamBudget(s, bytes <= room ? bytes : Math.min(bytes, s.soc.mem.bytesUnheld));
}

export type CommandOf<K extends Command['op']> = Extract<Command, { op: K }>;

/** Typed arrays are in host byte order; the item lists are little-endian (docs/stream.md). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * The item lists the binary stream encoded last (encodeItems: a frame's iovas and lengths or values): its command
 * takes them without a second pass over the base64. Any other list (a journal replay, a trace) is decoded.
 */
const recentlyEncoded: Array<{ text: string; words: Uint32Array }> = [];

/** A list of u32 items as a command carries it (base64 of little-endian words). `words` must not change after. */
export function encodeItems(words: Uint32Array): string {
  const text = Buffer.from(words.buffer, words.byteOffset, words.byteLength).toString('base64');
  if (LITTLE_ENDIAN) {
    if (recentlyEncoded.length === 2) recentlyEncoded.shift();
    recentlyEncoded.push({ text, words });
  }
  return text;
}

function u32s(b64: string, what = 'an item list'): Uint32Array {
  for (const e of recentlyEncoded) if (e.text === b64) return e.words;
  const b = Buffer.from(b64, 'base64');
  if (b.length % 4 !== 0) fail('notWords', { what });
  if (LITTLE_ENDIAN && b.byteOffset % 4 === 0) return new Uint32Array(b.buffer, b.byteOffset, b.length >>> 2);
  const out = new Uint32Array(b.length >>> 2);
  for (let i = 0; i < out.length; i++) out[i] = b.readUInt32LE(4 * i);
  return out;
}

const FAULT_STATUS: Record<string, number> = { translation: 1, permission: 2, 'access-flag': 3, external: 4, 'multi-hit': 5, 'tlb-miss': 6 };

/** MMIO over the stream: each item one register of the device's SMMU; a bad offset refuses that item only. */
function streamMmio(smmu: IommuInstance, cmd: CommandOf<'stream'>, offsets: Uint32Array): Uint8Array {
  const n = offsets.length;
  const values = cmd.sop === OP_MMIO_WRITE ? u32s(cmd.values ?? '') : null;
  if (values && values.length !== n) fail('valuePerOffset');
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
function streamBatch(s: Session, smmu: IommuInstance, bank: HwContext, cmd: CommandOf<'stream'>): Uint8Array {
  const iovas = u32s(cmd.iovas);
  const n = iovas.length;
  // The frame decoder checks these for the socket; a journaled or hand-written record is checked the same way.
  if (n === 0 || n > STREAM_MAX_ITEMS) fail('streamItems', { count: n, max: STREAM_MAX_ITEMS });
  const access = cmd.sop === OP_WRITE ? 1 : cmd.sop >= OP_TRANSLATE_READ && cmd.sop <= OP_TRANSLATE_EXEC ? cmd.sop - OP_TRANSLATE_READ : 0;
  const mid = cmd.mid === 0xff ? smmu.defaultMid(bank, access) : cmd.mid;
  if (cmd.sop >= OP_TRANSLATE_READ && cmd.sop <= OP_TRANSLATE_EXEC) {
    const buf = new Uint8Array(REPLY_HEADER + REPLY_ITEM * n);
    replyHeader(buf, cmd.sop, 0, n);
    // Items start at byte 12 of a fresh buffer: 4-byte aligned, so two u32 stores per item.
    const words = new Uint32Array(buf.buffer, REPLY_HEADER, 2 * n);
    const priv = cmd.priv;
    for (let i = 0; i < n; i++) {
      const r = smmu.translate(bank, iovas[i]!, access, priv, mid);
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
  if (lengths.length !== n) fail('lengthPerIova');
  let total = 0;
  for (const len of lengths) {
    if (len === 0) fail('emptyItem');
    total += len;
  }
  if (total > STREAM_MAX_BYTES) {
    fail('streamTooLarge', { limit: STREAM_MAX_BYTES, got: total });
  }
  const data = cmd.sop === OP_WRITE ? Buffer.from(cmd.data ?? '', 'base64') : undefined;
  if (data && data.length !== total) fail('writeLength', { total, dataLength: data.length });
  if (data) checkDeviceWriteBudget(s, lengths);
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
  if (data !== undefined && a.access !== 'write') fail('dataNotWrite', { access: a.access });
  if (data !== undefined && a.size !== undefined && a.size !== data.length) {
    fail('sizeNotData', { size: a.size, dataLength: data.length });
  }
  if (data !== undefined && data.length === 0) fail('emptyData');
  const len = data?.length ?? a.size ?? 1;
  if (a.iova > 0xffffffff || a.iova + len > 2 ** 32) fail('iovaRange', { iova: a.iova, size: len });
  return { iova: a.iova, access: ACCESS_NAMES.indexOf(a.access), priv: a.priv ?? false, mid: a.mid ?? defaultMid, size: data ? 0 : (a.size ?? 0), data };
}

function outOfRange32(value: number | undefined, op?: number): IommuError {
  return refusal('registerValue32', { ...(value !== undefined ? { value } : {}), ...(op !== undefined ? { op } : {}) });
}

/** Operations only the MSM SMMU has (stall, resume, fault injection, master routing): BAD_REQUEST elsewhere. */
function msmOnly(smmu: IommuInstance, what: string): MsmSmmu {
  if (!(smmu instanceof MsmSmmu)) {
    fail('msmOnly', { what, smmu: smmu.name, family: smmu.family });
  }
  return smmu;
}

/** The context bank a command names. Module level: a closure made per execute() costs every command (tsx names it). */
function bankIn(soc: Session['soc'], c: Ctx) {
  const smmu = soc.smmu(c.smmu);
  return { smmu, bank: soc.context(smmu, c.ctx) };
}

/**
 * Applies one command to a session; throws IommuError (changing nothing) on a refusal. The one gate: every check
 * that can refuse a command runs here or below, never only in a route, so every front end refuses the same things.
 */
export function execute(s: Session, input: Command): unknown {
  const cmd = checkCommand(input);
  const { soc, iommu, dma, pools, bus } = s;
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
      checkBatch(cmd.ops.length, s.maxBatchOps);
      const ops: BatchOp[] = cmd.ops.map((o) => (o.op === 'map' ? { ...o, prot: protFromNames(o.prot) } : o));
      return iommu.batch(cmd.did, ops);
    }
    case 'flush':
      if (cmd.iova !== undefined && (cmd.iova > 0xffffffff || cmd.iova + (cmd.size ?? 0x1000) > 2 ** 32 || cmd.size === 0)) {
        fail('iovaRange', { iova: cmd.iova, size: cmd.size, sizeMin: true });
      }
      return iommu.flush(cmd.did, cmd.iova, cmd.iova !== undefined ? (cmd.size ?? 0x1000) : undefined);
    case 'sync':
      return iommu.sync(cmd.did);
    case 'context-config': {
      const { smmu, bank } = bankIn(soc, cmd);
      if (smmu instanceof MsmSmmu) (bank as ContextBank).setFaultSettings(cmd.faultMode, cmd.faultInterrupt);
      else if (cmd.faultMode === 'stall' || cmd.faultInterrupt === false) msmOnly(smmu, cmd.faultMode === 'stall' ? 'faultMode "stall"' : 'faultInterrupt');
      const f = smmu.faultSettings(bank);
      const fs = f.settings ?? f;
      bus.emit({ type: 'context', action: 'configure', smmu: smmu.name, context: bank.index, device: bank.name, domain: bank.domain, faultMode: fs.faultMode, faultInterrupt: fs.faultInterrupt });
      return { smmu, bank };
    }
    case 'clear-fault': {
      const { smmu, bank } = bankIn(soc, cmd);
      if (cmd.value !== undefined && cmd.value > 0xffffffff) throw outOfRange32(cmd.value);
      const r = smmu.clearFault(bank, cmd.value);
      bus.emit({ type: 'context', action: 'clear-fault', smmu: smmu.name, context: bank.index, device: bank.name, domain: bank.domain, register: r.register, old: hex(r.old), ...(r.register === 'FSR' ? { fsr: hex(r.value) } : { value: hex(r.value) }) });
      return { smmu, bank };
    }
    case 'resume': {
      const { smmu, bank } = bankIn(soc, cmd);
      return msmOnly(smmu, 'resume').resume(bank as ContextBank, cmd.stall, cmd.action);
    }
    case 'inject-fault': {
      const { smmu, bank } = bankIn(soc, cmd);
      msmOnly(smmu, 'inject-fault');
      (bank as ContextBank).injected = cmd.kind;
      bus.emit({ type: 'context', action: 'inject-fault', smmu: smmu.name, context: bank.index, device: bank.name, domain: bank.domain, kind: cmd.kind });
      return { smmu, bank };
    }
    case 'mmio': {
      checkBatch(cmd.ops.length, s.maxBatchOps);
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
      const req = transferOf(cmd, smmu.defaultMid(bank, ACCESS_NAMES.indexOf(cmd.access)));
      if (req.data) checkDeviceWriteBudget(s, [req.data.length]);
      return smmu.transfer(bank, req);
    }
    case 'master-access': {
      const smmu = msmOnly(soc.smmu(cmd.smmu), 'master access');
      const bank = smmu.bankOfMid(cmd.mid);
      if (!bank) fail('noMidRoute', { mid: cmd.mid });
      const req = transferOf(cmd, cmd.mid);
      if (req.data) checkDeviceWriteBudget(s, [req.data.length]);
      return smmu.transfer(bank, req);
    }
    case 'access-batch': {
      checkBatch(cmd.iovas.length, s.maxBatchOps);
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
      if (data.length === 0) fail('emptyMemoryWrite');
      checkRam(soc.mem, cmd.paddr, data.length);
      checkRamBudget(s, soc.mem.bytesToHold(cmd.paddr, data.length));
      if (s.cache) s.cache.store(cmd.paddr, data);
      else soc.mem.writeBytes(cmd.paddr, data);
      bus.emit({ type: 'memory', action: 'write', paddr: hex(cmd.paddr), size: data.length });
      return undefined;
    }
    case 'memory-read': {
      checkRam(soc.mem, cmd.paddr, cmd.size);
      return s.cache ? s.cache.load(cmd.paddr, cmd.size) : soc.mem.readBytes(cmd.paddr, cmd.size);
    }
    case 'cache-maintain': {
      if (cmd.size <= 0 || cmd.paddr > 0xffffffff || cmd.paddr + cmd.size > 2 ** 32) {
        fail('paddrRange', { paddr: cmd.paddr, size: cmd.size });
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
      return streamBatch(s, smmu, bank, cmd);
    }
    default:
      fail('unknownCommand', { op: (cmd as { op?: unknown }).op });
  }
}
