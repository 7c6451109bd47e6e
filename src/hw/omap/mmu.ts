/**
 * The OMAP IOMMU (omap-iommu.c): one MMU per client processor with one context (the TTB), a 32-entry TLB that the
 * table walker fills, entries below LOCK.BASE locked, CAM/RAM/LD_TLB to load entries by hand, GFLUSH and
 * FLUSH_ENTRY to drop them, faults in IRQSTATUS/FAULT_AD and no stall (the master gets a bus error).
 */
import { hex } from '../../errors.js';
import { OMAP_PROT, omapWalk } from '../../pgtable/omap.js';
import { protToNames } from '../../pgtable/desc.js';
import type { PgTable } from '../../pgtable/format.js';
import { WALK_EXTERNAL, WALK_OK, WalkResult } from '../../pgtable/v7s.js';
import type { SmmuSpec } from '../profile.js';
import type { FaultKind } from '../regs.js';
import {
  ACCESS_NAMES,
  ClientContext,
  OUTCOME_FAULT,
  OUTCOME_OK,
  TLB_BYPASS,
  TLB_HIT,
  TLB_MISS,
  transferPages,
  type FaultBase,
  type FamilyEnv,
  type HwAccessResult,
  type HwContext,
  type IommuInstance,
  type TlbView,
  type TransferRequest,
  type Txn,
} from '../family.js';
import { RegisterWindow } from '../window.js';
import * as O from './regs.js';

/** A fault with the OMAP MMU's registers, after this fault. */
export interface OmapFault extends FaultBase {
  family: 'omap';
  irqstatus: string;
  irqstatusBits: string[];
  faultAd: string;
}

const KIND_BIT: Partial<Record<FaultKind, number>> = {
  'tlb-miss': O.MMU_IRQ_TLBMISS,
  translation: O.MMU_IRQ_TRANSLATIONFAULT,
  external: O.MMU_IRQ_TABLEWALKFAULT,
  'multi-hit': O.MMU_IRQ_MULTIHITFAULT,
};

export function irqBitNames(v: number): string[] {
  return O.IRQ_BIT_NAMES.filter(([b]) => v & b).map(([, n]) => n);
}

/** One TLB entry: the CAM and RAM words as READ_CAM/READ_RAM give them, and how it got there. */
interface Entry {
  cam: number;
  ram: number;
  /** Loaded by the walker (only those are checked for staleness), or by LD_TLB. */
  walker: boolean;
  /** Memory generation and TTB when the walked translation was last known current. */
  gen: number;
  ttb: number;
}

const REGISTERS: Record<number, string> = {
  [O.MMU_REVISION]: 'REVISION',
  [O.MMU_IRQSTATUS]: 'IRQSTATUS',
  [O.MMU_IRQENABLE]: 'IRQENABLE',
  [O.MMU_WALKING_ST]: 'WALKING_ST',
  [O.MMU_CNTL]: 'CNTL',
  [O.MMU_FAULT_AD]: 'FAULT_AD',
  [O.MMU_TTB]: 'TTB',
  [O.MMU_LOCK]: 'LOCK',
  [O.MMU_LD_TLB]: 'LD_TLB',
  [O.MMU_CAM]: 'CAM',
  [O.MMU_RAM]: 'RAM',
  [O.MMU_GFLUSH]: 'GFLUSH',
  [O.MMU_FLUSH_ENTRY]: 'FLUSH_ENTRY',
  [O.MMU_READ_CAM]: 'READ_CAM',
  [O.MMU_READ_RAM]: 'READ_RAM',
  [O.MMU_EMU_FAULT_AD]: 'EMU_FAULT_AD',
  [O.MMU_GP_REG]: 'GP_REG',
};
const WINDOW = new RegisterWindow(O.OMAP_WINDOW, REGISTERS, new Set(['CNTL', 'TTB', 'LOCK', 'LD_TLB', 'GFLUSH', 'FLUSH_ENTRY']), new Set(['LD_TLB', 'GFLUSH', 'FLUSH_ENTRY']));

class OmapTxn implements Txn {
  outcome = OUTCOME_OK;
  paddr = 0;
  tlb = TLB_MISS;
  stale = false;
  pageSize = 0;
  fault: OmapFault | null = null;
  stall: string | null = null;
}

export interface OmapSnapshot {
  regs: Record<string, number>;
  domain: string | null;
  faults: number;
}

export class OmapMmu implements IommuInstance {
  readonly family = 'omap' as const;
  readonly windowSize = O.OMAP_WINDOW;
  readonly name: string;
  readonly base: number;
  readonly banks: readonly ClientContext[];
  /** GP_REG = 1 on attach: the MMU answers faults with a bus error (the IPU's "bus-error-back"). */
  readonly busErrorBack: boolean;
  IRQSTATUS = 0;
  IRQENABLE = 0;
  CNTL = 0;
  FAULT_AD = 0;
  TTB = 0;
  LOCK = 0;
  CAM = 0;
  RAM = 0;
  GP_REG = 0;
  readonly tlb: Array<Entry | null> = new Array(O.OMAP_TLB_ENTRIES).fill(null);
  evictions = 0;
  invalidations = 0;
  private readonly res = new OmapTxn();
  private readonly w = new WalkResult();

  constructor(
    spec: SmmuSpec,
    private readonly env: FamilyEnv,
  ) {
    this.name = spec.name;
    this.base = spec.base;
    this.busErrorBack = spec.busErrorBack ?? false;
    const c = spec.contexts[0];
    this.banks = [new ClientContext(0, c?.name ?? null, c?.mids ?? [])];
  }

  get sink() {
    return this.env.sink;
  }

  private get ctx(): ClientContext {
    return this.banks[0]!;
  }

  get base_(): number {
    return ((this.LOCK >>> O.MMU_LOCK_BASE_SHIFT) & 0x1f) >>> 0;
  }

  get victim(): number {
    return (this.LOCK >>> O.MMU_LOCK_VICT_SHIFT) & 0x1f;
  }

  private setVictim(v: number): void {
    this.LOCK = ((this.LOCK & ~(0x1f << O.MMU_LOCK_VICT_SHIFT)) | ((v & 0x1f) << O.MMU_LOCK_VICT_SHIFT)) >>> 0;
  }

  defaultMid(ctx: HwContext): number {
    return ctx.mids[0] ?? 0;
  }

  tableRegister(): number {
    return this.TTB;
  }

  faultSettings(): { faultMode: 'terminate'; faultInterrupt: boolean } {
    return { faultMode: 'terminate', faultInterrupt: (this.IRQENABLE & O.MMU_IRQ_MASK) !== 0 };
  }

  enabled(): boolean {
    return (this.CNTL & O.MMU_CNTL_MMU_EN) !== 0;
  }

  // ---- the transaction path -------------------------------------------------------------------------------

  translate(ctx: HwContext, iova: number, access: number, priv: boolean): Txn {
    const r = this.res;
    r.stale = false;
    r.stall = null;
    if (!(this.CNTL & O.MMU_CNTL_MMU_EN)) {
      ctx.bypasses++;
      r.outcome = OUTCOME_OK;
      r.paddr = iova >>> 0;
      r.tlb = TLB_BYPASS;
      r.pageSize = 0x1000;
      return r;
    }
    let hit: Entry | null = null;
    let matches = 0;
    for (const e of this.tlb) {
      if (e === null || !(e.cam & O.MMU_CAM_V)) continue;
      const size = O.CAM_PGSZ_BYTES[e.cam & 3];
      if ((((iova ^ e.cam) & ~(size - 1)) >>> 0) === 0) {
        matches++;
        hit = e;
      }
    }
    if (matches > 1) {
      r.tlb = TLB_HIT;
      return this.fault(ctx, 'multi-hit', iova, access, priv);
    }
    if (hit) {
      ctx.tlbHits++;
      const size = O.CAM_PGSZ_BYTES[hit.cam & 3];
      r.tlb = TLB_HIT;
      r.pageSize = size;
      r.paddr = ((hit.ram & ~(size - 1) & 0xfffff000) | (iova & (size - 1))) >>> 0;
      if (hit.walker && (hit.gen !== this.env.mem.gen || hit.ttb !== this.TTB)) this.revalidate(ctx, hit, iova, r.paddr);
      r.outcome = OUTCOME_OK;
      return r;
    }
    ctx.tlbMisses++;
    r.tlb = TLB_MISS;
    if (!(this.CNTL & O.MMU_CNTL_TWL_EN)) return this.fault(ctx, 'tlb-miss', iova, access, priv);
    const w = omapWalk(this.env.mem, this.TTB, iova, this.w);
    if (w.status !== WALK_OK) return this.fault(ctx, w.status === WALK_EXTERNAL ? 'external' : 'translation', iova, access, priv);
    this.fill(w.vaBase, w.paBase, w.size);
    r.paddr = w.paddr;
    r.pageSize = w.size;
    r.outcome = OUTCOME_OK;
    return r;
  }

  transfer(ctx: HwContext, req: TransferRequest): HwAccessResult {
    return transferPages(this, this.env.mem, ctx, req, this.env.cache);
  }

  notifyFault(ctx: HwContext, fault: FaultBase): void {
    const bit = KIND_BIT[fault.kind] ?? 0;
    if (this.IRQENABLE & bit) this.env.report(ctx, fault);
  }

  /** The walker loads the entry at VICTIM (raised to BASE if below); VICTIM then advances and wraps to BASE. */
  private fill(va: number, pa: number, size: number): void {
    const base = this.base_;
    let v = this.victim;
    if (v < base) v = base;
    if (this.tlb[v]) this.evictions++;
    this.tlb[v] = { cam: ((va & O.MMU_CAM_VATAG_MASK) | O.MMU_CAM_V | O.camSizeCode(size)) >>> 0, ram: (pa & 0xfffff000) >>> 0, walker: true, gen: this.env.mem.gen, ttb: this.TTB };
    let next = v + 1;
    if (next >= O.OMAP_TLB_ENTRIES) next = base;
    this.setVictim(next);
  }

  /** The stale-TLB detector: a walker-loaded entry whose table changed is re-walked and, if it differs, reported. */
  private revalidate(ctx: HwContext, e: Entry, iova: number, paddr: number): void {
    const w = omapWalk(this.env.mem, this.TTB, iova, this.w);
    if (w.status === WALK_OK && w.paddr === paddr) {
      e.gen = this.env.mem.gen;
      e.ttb = this.TTB;
      return;
    }
    this.res.stale = true;
    const prot = protToNames(OMAP_PROT);
    this.env.sink.emit({
      type: 'stale-tlb-hit',
      smmu: this.name,
      context: 0,
      device: ctx.name,
      domain: ctx.domain,
      iova: hex(iova),
      stale: { paddr: hex(paddr), prot },
      current: w.status === WALK_OK ? { paddr: hex(w.paddr), prot } : null,
    });
  }

  /** Bits OR into IRQSTATUS until cleared; FAULT_AD takes the latest faulting address; no stall. */
  private fault(ctx: HwContext, kind: FaultKind, iova: number, access: number, priv: boolean): Txn {
    const bit = KIND_BIT[kind]!;
    ctx.faults++;
    this.IRQSTATUS = (this.IRQSTATUS | bit) >>> 0;
    this.FAULT_AD = iova >>> 0;
    const fault: OmapFault = {
      smmu: this.name,
      context: 0,
      device: ctx.name,
      domain: ctx.domain,
      iova: hex(iova),
      access: ACCESS_NAMES[access]!,
      priv,
      flags: 0,
      kind,
      family: 'omap',
      irqstatus: hex(this.IRQSTATUS),
      irqstatusBits: irqBitNames(this.IRQSTATUS),
      faultAd: hex(this.FAULT_AD),
    };
    if (this.IRQENABLE & bit) this.env.sink.emit({ type: 'fault', ...fault });
    const r = this.res;
    r.outcome = OUTCOME_FAULT;
    r.fault = fault;
    return r;
  }

  // ---- the register window --------------------------------------------------------------------------------

  registerName(offset: number): string {
    return WINDOW.name(offset);
  }

  private entryAtVictim(): Entry | null {
    return this.tlb[this.victim] ?? null;
  }

  readRegister(offset: number): number {
    switch (this.registerName(offset)) {
      case 'REVISION':
        return O.REVISION_VALUE;
      case 'IRQSTATUS':
        return this.IRQSTATUS;
      case 'IRQENABLE':
        return this.IRQENABLE;
      case 'CNTL':
        return this.CNTL;
      case 'FAULT_AD':
        return this.FAULT_AD;
      case 'TTB':
        return this.TTB;
      case 'LOCK':
        return this.LOCK;
      case 'CAM':
        return this.CAM;
      case 'RAM':
        return this.RAM;
      case 'READ_CAM':
        return this.entryAtVictim()?.cam ?? 0;
      case 'READ_RAM':
        return this.entryAtVictim()?.ram ?? 0;
      case 'GP_REG':
        return this.GP_REG;
      default:
        return 0; // WALKING_ST (the walk is instantaneous), EMU_FAULT_AD (no emulator), command registers
    }
  }

  writeRegister(offset: number, value: number): { name: string; old: number; value: number } {
    const v = value >>> 0;
    const name = this.registerName(offset);
    const old = this.readRegister(offset);
    switch (name) {
      case 'IRQSTATUS':
        this.IRQSTATUS = (this.IRQSTATUS & ~v) >>> 0; // write-1-to-clear
        break;
      case 'IRQENABLE':
        this.IRQENABLE = v & O.MMU_IRQ_MASK;
        break;
      case 'CNTL':
        this.CNTL = v;
        break;
      case 'TTB':
        this.TTB = v;
        break;
      case 'LOCK':
        this.LOCK = v & O.MMU_LOCK_MASK;
        break;
      case 'CAM':
        this.CAM = v;
        break;
      case 'RAM':
        this.RAM = v;
        break;
      case 'GP_REG':
        this.GP_REG = v;
        break;
      case 'LD_TLB':
        // Writes CAM/RAM into the entry at VICTIM, without advancing it.
        if (v & 1) {
          const i = this.victim;
          if (this.tlb[i]) this.evictions++;
          this.tlb[i] = { cam: this.CAM, ram: this.RAM, walker: false, gen: 0, ttb: 0 };
        }
        break;
      case 'GFLUSH':
        if (v & 1) this.dropWhere((e) => !(e.cam & O.MMU_CAM_P));
        break;
      case 'FLUSH_ENTRY':
        if (v & 1) {
          const va = (this.CAM & O.MMU_CAM_VATAG_MASK) >>> 0;
          this.dropWhere((e) => this.covers(e, va, 1));
        }
        break;
      default:
        break; // REVISION, WALKING_ST, FAULT_AD, READ_CAM, READ_RAM, EMU_FAULT_AD are read-only
    }
    WINDOW.traceWrite(this.env.sink, () => ({ smmu: this.name, context: 0, device: this.ctx.name, domain: this.ctx.domain }), this, { name, offset, old, value: v });
    return { name, old, value: v };
  }

  private covers(e: Entry, iova: number, size: number): boolean {
    const esize = O.CAM_PGSZ_BYTES[e.cam & 3];
    const ebase = (e.cam & ~(esize - 1) & O.MMU_CAM_VATAG_MASK) >>> 0;
    return ebase < iova + size && ebase + esize > iova;
  }

  private dropWhere(pred: (e: Entry) => boolean): number {
    let n = 0;
    this.tlb.forEach((e, i) => {
      if (e && e.cam & O.MMU_CAM_V && pred(e)) {
        this.tlb[i] = null;
        n++;
      }
    });
    this.invalidations += n;
    return n;
  }

  registers(): Record<string, number> {
    return WINDOW.values(this);
  }

  clearFault(_ctx: HwContext, value?: number): { register: string; old: number; value: number } {
    return WINDOW.clearStatus(this, O.MMU_IRQSTATUS, value);
  }

  tlbView(): TlbView {
    const ctx = this.ctx;
    return { entries: this.tlb.filter((e) => e && e.cam & O.MMU_CAM_V).length, capacity: O.OMAP_TLB_ENTRIES, policy: 'round-robin', hits: ctx.tlbHits, misses: ctx.tlbMisses, evictions: this.evictions, invalidations: this.invalidations };
  }

  /** The TLB as READ_CAM/READ_RAM would show it, entry by entry, with LOCK's base and victim. */
  details(): Record<string, unknown> {
    const base = this.base_;
    return {
      lock: { base, victim: this.victim },
      tlb: this.tlb.flatMap((e, index) => {
        if (!e || !(e.cam & O.MMU_CAM_V)) return [];
        const size = O.CAM_PGSZ_BYTES[e.cam & 3];
        return [{ index, cam: hex(e.cam), ram: hex(e.ram), va: hex((e.cam & ~(size - 1) & O.MMU_CAM_VATAG_MASK) >>> 0), pa: hex((e.ram & ~(size - 1) & 0xfffff000) >>> 0), size, preserved: (e.cam & O.MMU_CAM_P) !== 0, locked: index < base, walker: e.walker }];
      }),
    };
  }

  // ---- what the IOMMU API programs ------------------------------------------------------------------------

  /** omap_iommu_attach: TTB, IRQENABLE, MMU_EN | TWL_EN, then the whole TLB flushed (LOCK = 0, GFLUSH). */
  attachContext(ctx: HwContext, table: PgTable, domain: string): void {
    this.TTB = table.root >>> 0;
    this.IRQENABLE = O.MMU_IRQ_TWL_MASK;
    this.CNTL = ((this.CNTL & ~(O.MMU_CNTL_MMU_EN | O.MMU_CNTL_TWL_EN)) | O.MMU_CNTL_MMU_EN | O.MMU_CNTL_TWL_EN) >>> 0;
    if (this.busErrorBack) this.GP_REG = 1;
    this.LOCK = 0;
    this.dropWhere((e) => !(e.cam & O.MMU_CAM_P));
    ctx.domain = domain;
  }

  switchContext(ctx: HwContext, table: PgTable, domain: string): void {
    this.TTB = table.root >>> 0;
    this.dropWhere(() => true);
    ctx.domain = domain;
  }

  /** Detach clears MMU_EN and TWL_EN and empties the TLB; TTB, IRQENABLE and the domain's table stay. */
  detachContext(ctx: HwContext): void {
    this.CNTL = (this.CNTL & ~(O.MMU_CNTL_MMU_EN | O.MMU_CNTL_TWL_EN)) >>> 0;
    this.dropWhere(() => true);
    ctx.domain = null;
  }

  /** The whole-domain flush is LOCK = 0 then GFLUSH (preserved entries survive); a range drops covering entries. */
  flushContext(_ctx: HwContext, range?: { iova: number; size: number }): number {
    if (!range) {
      this.LOCK = 0;
      return this.dropWhere((e) => !(e.cam & O.MMU_CAM_P));
    }
    return this.dropWhere((e) => this.covers(e, range.iova, range.size));
  }

  resetTlb(): void {
    this.tlb.fill(null);
    this.evictions = this.invalidations = 0;
    this.ctx.tlbHits = this.ctx.tlbMisses = 0;
  }

  /** Registers and the context (the TLB is not kept: it refills, as after a reset). */
  snapshot(): OmapSnapshot {
    return {
      regs: { IRQSTATUS: this.IRQSTATUS, IRQENABLE: this.IRQENABLE, CNTL: this.CNTL, FAULT_AD: this.FAULT_AD, TTB: this.TTB, LOCK: this.LOCK, CAM: this.CAM, RAM: this.RAM, GP_REG: this.GP_REG },
      domain: this.ctx.domain,
      faults: this.ctx.faults,
    };
  }

  restore(s: unknown): void {
    const x = s as OmapSnapshot;
    Object.assign(this, x.regs);
    this.ctx.domain = x.domain;
    this.ctx.faults = x.faults;
    this.tlb.fill(null);
  }
}
