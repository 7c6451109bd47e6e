/**
 * The family seam: one interface for an IOMMU instance, whatever its hardware (the MSM SMMU, the OMAP IOMMU, the
 * Tegra GART). Front ends (IOMMU API, MMIO window, device access, binary stream) talk to this interface only, as
 * QEMU keeps one translation machinery under several front ends; each family lives in its own folder.
 */
import type { EventSink } from '../events/types.js';
import type { CpuCache } from '../memory/cache.js';
import type { PhysMemory } from '../memory/phys.js';
import type { PgTable } from '../pgtable/format.js';
export type { PgTable };
import type { FaultKind } from './regs.js';
import type { TlbPolicy } from './tlb.js';

export type Family = 'msm' | 'omap' | 'gart';
export const FAMILY_NAMES: readonly Family[] = ['msm', 'omap', 'gart'];

/** What every family's context has: the unit a device is (an MSM bank, the OMAP MMU's one TTB, a GART client). */
export interface HwContext {
  readonly index: number;
  readonly name: string | null;
  readonly mids: readonly number[];
  domain: string | null;
  faults: number;
  tlbHits: number;
  tlbMisses: number;
  bypasses: number;
  readonly transactions: number;
  /** Stalled transactions (only the MSM SMMU stalls: always empty elsewhere). */
  readonly stalls: ReadonlyArray<{ id: string; iova: number; access: number }>;
}

/** Every IOMMU's TLB as the API reports it (capacity 0: the family has none). */
export interface TlbView {
  entries: number;
  capacity: number;
  hits: number;
  misses: number;
  evictions: number;
  /** Entries dropped by invalidation (the MSM SMMU counts them). */
  invalidations?: number;
  /** Replacement policy, when the family has a TLB. */
  policy?: TlbPolicy;
}

/** A fault as the API and the event stream report it: common fields plus the family's registers. */
export interface FaultBase {
  smmu: string;
  context: number;
  device: string | null;
  domain: string | null;
  iova: string;
  access: 'read' | 'write' | 'exec';
  priv: boolean;
  flags: number;
  kind: FaultKind;
  family?: Family;
  stall?: string;
}

/** One page's translation (the stream's hot path); fields mean what they mean on TxnResult of the MSM SMMU. */
export interface Txn {
  outcome: number;
  paddr: number;
  tlb: number;
  stale: boolean;
  pageSize: number;
  fault: FaultBase | null;
  stall: string | null;
}

export interface TransferRequest {
  iova: number;
  access: number;
  priv: boolean;
  mid: number;
  size: number;
  data?: Uint8Array | undefined;
}

export interface Segment {
  iova: number;
  paddr: number;
  size: number;
  tlb: 'hit' | 'miss' | 'bypass';
  unbacked?: boolean;
}

export type HwAccessResult =
  | { outcome: 'ok'; paddr: number; tlb: 'hit' | 'miss' | 'bypass'; stale?: true; unbacked?: true; data?: Uint8Array; segments?: Segment[] }
  | { outcome: 'fault'; fault: FaultBase }
  | { outcome: 'stalled'; stall: string; fault: FaultBase }
  | { outcome: 'terminated' };

/** One IOMMU instance of a SoC. */
export interface IommuInstance {
  readonly family: Family;
  readonly name: string;
  readonly base: number;
  /** Bytes of the MMIO register window. */
  readonly windowSize: number;
  readonly banks: readonly HwContext[];
  readonly sink: EventSink;

  /** One transaction of one page: allocation-free where the family allows; read the result before the next. */
  translate(ctx: HwContext, iova: number, access: number, priv: boolean, mid: number): Txn;
  /** A whole transfer: every page translated first; a fault on any page moves no bytes. */
  transfer(ctx: HwContext, req: TransferRequest): HwAccessResult;
  /** Refuses (LIMIT) a batch of n transactions that could stall more than the context may hold (MSM only). */
  checkStallRoom?(ctx: HwContext, n: number): void;
  /** A fault of a bare translate reaches the IOMMU layer's handler (report_iommu_fault). */
  notifyFault(ctx: HwContext, fault: FaultBase): void;
  /** The master ID a device access carries when the request names none (the GART: read or write client). */
  defaultMid(ctx: HwContext, access: number): number;
  /** The register that says which table the context walks (TTBR0, TTB; the GART: its aperture base). */
  tableRegister(ctx: HwContext): number;
  /** Per-context fault settings for the hardware view (only the MSM SMMU can stall). */
  faultSettings(ctx: HwContext): { faultMode: 'terminate' | 'stall'; faultInterrupt: boolean; settings?: { faultMode: 'terminate' | 'stall'; faultInterrupt: boolean } };
  /** Family-specific state for the hardware view (the OMAP TLB with its locked entries, the GART aperture). */
  details?(): Record<string, unknown>;
  /** Whether the context translates (SCTLR.M, CNTL.MMU_EN, GART_CONFIG) rather than passing addresses through. */
  enabled(ctx: HwContext): boolean;

  /** The MMIO window: register name at an offset (BAD_REQUEST for unaligned, unknown or out-of-window offsets). */
  registerName(offset: number): string;
  readRegister(offset: number): number;
  writeRegister(offset: number, value: number): { name: string; old: number; value: number };
  /** A context's registers for the hardware view, by name. */
  registers(ctx: HwContext): Record<string, number>;
  /** Writes the family's fault status register (write-1-to-clear); value defaults to its current value. */
  clearFault(ctx: HwContext, value?: number): { register: string; old: number; value: number };
  tlbView(ctx?: HwContext): TlbView;

  /** Refuses an attach the hardware cannot take (the GART: another domain is active), before anything changes. */
  checkAttach?(ctx: HwContext, table: PgTable, replace: boolean): void;
  /** What attach programs: the hardware now walks `table` for this context. */
  attachContext(ctx: HwContext, table: PgTable, domain: string): void;
  /** Attach with replace: the context switches tables on the fly; its TLB entries go. */
  switchContext(ctx: HwContext, table: PgTable, domain: string): void;
  /** Detach: the context stops translating (family rules for what it keeps). */
  detachContext(ctx: HwContext): void;
  /** Whole invalidation (flush_iotlb_all) or of a range; returns entries dropped. */
  flushContext(ctx: HwContext, range?: { iova: number; size: number }): number;
  /** A domain's table changed underneath the hardware (the GART: entries are registers). */
  tableChanged?(table: PgTable): void;

  /** After a restore: a domain whose devices are attached hands its table back (the GART's active entries). */
  adoptTable?(domain: string, table: PgTable): void;

  /** Empties the TLB and zeroes its counters, as a reset does (restore and replay: no snapshot holds a TLB). */
  resetTlb(): void;

  snapshot(): unknown;
  restore(s: unknown): void;
}

/** What the non-MSM families share within one SoC: RAM, the event sink and the IOMMU layer's fault report. */
export interface FamilyEnv {
  readonly mem: PhysMemory;
  /** The CPU cache of a non-coherent session: device data goes beneath it (or snoops it, coherent devices). */
  readonly cache: CpuCache | null;
  readonly sink: EventSink;
  /** report_iommu_fault: the IOMMU layer hands the fault to the domain's handler. */
  report(ctx: HwContext, fault: FaultBase): void;
}

/** A context of a family whose contexts hold no registers of their own (OMAP: one per MMU; GART: its clients). */
export class ClientContext implements HwContext {
  domain: string | null = null;
  faults = 0;
  tlbHits = 0;
  tlbMisses = 0;
  bypasses = 0;
  readonly stalls: ReadonlyArray<{ id: string; iova: number; access: number }> = [];
  constructor(
    readonly index: number,
    readonly name: string | null,
    readonly mids: readonly number[],
  ) {}
  get transactions(): number {
    return this.tlbHits + this.tlbMisses + this.bypasses;
  }
}

export const OUTCOME_OK = 0;
export const OUTCOME_FAULT = 1;
export const TLB_HIT = 0;
export const TLB_MISS = 1;
export const TLB_BYPASS = 2;
const TLB_NAMES = ['hit', 'miss', 'bypass'] as const;
export const ACCESS_NAMES = ['read', 'write', 'exec'] as const;

/**
 * The transfer loop the families without stalls share: every 4 KiB page translated first (each its own
 * lookup), then the bytes moved; a fault on any page moves nothing and reaches the IOMMU layer.
 */
export function transferPages(inst: IommuInstance, mem: PhysMemory, ctx: HwContext, req: TransferRequest, cache: CpuCache | null = null): HwAccessResult {
  const { iova, access, priv, mid } = req;
  const size = req.data ? req.data.length : Math.max(1, req.size);
  const segments: Segment[] = [];
  let stale = false;
  for (let a = iova; a < iova + size; ) {
    const len = Math.min(iova + size - a, 0x1000 - (a & 0xfff));
    const r = inst.translate(ctx, a, access, priv, mid);
    if (r.outcome !== OUTCOME_OK) {
      inst.notifyFault(ctx, r.fault!);
      return { outcome: 'fault', fault: r.fault! };
    }
    stale ||= r.stale;
    segments.push({ iova: a, paddr: r.paddr, size: len, tlb: TLB_NAMES[r.tlb]! });
    a += len;
  }
  return moveSegments(mem, cache, ctx.name, req, size, segments, stale);
}

/**
 * The data half of a transfer, once every page is translated (every family): bytes move between the request and
 * RAM (through the CPU cache's snoop rules when the session has one); pages outside RAM are marked unbacked.
 */
export function moveSegments(mem: PhysMemory, cache: CpuCache | null, device: string | null, req: TransferRequest, size: number, segments: Segment[], stale: boolean): HwAccessResult & { outcome: 'ok' } {
  const write = req.access === 1;
  let unbacked = false;
  let out: Uint8Array | undefined;
  if (!write && req.size > 0 && !req.data) out = new Uint8Array(size);
  let o = 0;
  for (const s of segments) {
    if (!mem.isRamRange(s.paddr, s.size)) {
      s.unbacked = true;
      unbacked = true;
    } else if (req.data && write) {
      if (cache) cache.deviceWrite(device, s.paddr, req.data.subarray(o, o + s.size));
      else mem.writeBytes(s.paddr, req.data.subarray(o, o + s.size));
    } else if (out) {
      if (cache) cache.deviceRead(device, s.paddr, s.size, out, o);
      else mem.readBytes(s.paddr, s.size, out, o);
    }
    o += s.size;
  }
  const first = segments[0]!;
  // Optional fields set only when present (no object spread per field: this is every access's result).
  const r: HwAccessResult & { outcome: 'ok' } = { outcome: 'ok', paddr: first.paddr, tlb: first.tlb };
  if (stale) r.stale = true;
  if (unbacked) r.unbacked = true;
  if (out) r.data = out;
  if (segments.length > 1) r.segments = segments;
  return r;
}
