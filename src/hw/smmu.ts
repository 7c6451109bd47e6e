/**
 * The MSM SMMU hardware: context banks, M2VCBR routing, the TLB and the one transaction path (TLB → walk →
 * permission → ok | fault | stall) that every front end (IOMMU API, MMIO, device access, stream) shares.
 */
import { fail, hex } from '../errors.js';
import type { EventBody, EventSink } from '../events/types.js';
import type { CpuCache } from '../memory/cache.js';
import type { PhysMemory } from '../memory/phys.js';
import { PERM_AP0, PERM_AP1, PERM_AP2, PERM_XN, permToProt, pgsizeIndex, protToNames, SZ_4K } from '../pgtable/desc.js';
import { WALK_EXTERNAL, WALK_OK, WalkResult, walk } from '../pgtable/v7s.js';
import { ACCESS_EXEC, ACCESS_NAMES, ACCESS_WRITE, ContextBank, type FaultRecord, type Stall } from './context.js';
import { moveSegments, type Segment, type TransferRequest } from './family.js';
import type { SmmuSpec } from './profile.js';
import {
  ACTLR_CFCFG,
  ACTLR_CFEIE,
  ACTLR_TLBMCFG_SHIFT,
  ACTLR_TLBMCFG_WALK,
  FAULT_KIND_BIT,
  FSR_FAULT_BITS,
  FSR_MULTI,
  FSR_SS,
  FSYNR1_AINST,
  FSYNR1_APRIV,
  FSYNR1_AWRITE,
  NUM_MIDS,
  PAR_FAULT,
  PAR_SS,
  SCTLR_AFE,
  SCTLR_M,
  CONTEXT_REGISTERS,
  GLOBAL_STATE_REGISTERS,
  type GlobalStateRegister,
  fsrBitNames,
  type FaultKind,
} from './regs.js';
import { MULTI_HIT, Tlb, type TlbEntry, type TlbPolicy, type TlbStats } from './tlb.js';

export const OUTCOME_OK = 0;
export const OUTCOME_FAULT = 1;
export const OUTCOME_STALLED = 2;
export const TLB_HIT = 0;
export const TLB_MISS = 1;
export const TLB_BYPASS = 2;
export const TLB_STATE_NAMES = ['hit', 'miss', 'bypass'] as const;

/** Reusable result of one transaction: read it before the next transaction on the same SMMU. */
export class TxnResult {
  outcome = OUTCOME_OK;
  paddr = 0;
  tlb = TLB_MISS;
  stale = false;
  pageSize = 0;
  fault: FaultRecord | null = null;
  stall: string | null = null;
}

/** What the SMMUs share within one SoC: RAM, the event sink, stall ids and the IOMMU layer's fault hook. */
export interface HwEnv {
  mem: PhysMemory;
  sink: EventSink;
  nextStallId(): string;
  maxStallsPerContext: number;
  /** Every new stall, whether or not ACTLR.CFEIE lets it raise an event (the session's stall timeout). */
  onStall?: ((smmu: Smmu, bank: ContextBank, stall: string) => void) | undefined;
  /** The IOMMU API's report_iommu_fault: may answer a stall with retry or terminate. */
  faultHook: ((bank: ContextBank, fault: FaultRecord) => 'retry' | 'terminate' | void) | null;
  /** The CPU cache of a non-coherent session: device data goes beneath it (or snoops it, coherent devices). */
  cache: CpuCache | null;
}

export type AccessResult =
  | {
      outcome: 'ok';
      paddr: number;
      tlb: 'hit' | 'miss' | 'bypass';
      stale?: true;
      unbacked?: true;
      data?: Uint8Array;
      segments?: Segment[];
    }
  | { outcome: 'fault'; fault: FaultRecord }
  | { outcome: 'stalled'; stall: string; fault: FaultRecord }
  | { outcome: 'terminated' };

export interface SmmuSnapshot {
  m2vcbr: number[];
  CR: number;
  ESR: number;
  /** The other global registers that hold state (absent in snapshots from before they were modelled). */
  globals?: Partial<Record<GlobalStateRegister, number>>;
  banks: Array<{
    regs: Record<string, number>;
    faultMode: 'terminate' | 'stall';
    faultInterrupt: boolean;
    domain: string | null;
    injected: FaultKind | null;
    stalls: Stall[];
    faults: number;
  }>;
  stalled: Array<[string, Omit<TransferRequest, 'data'> & { data?: string | undefined }]>;
}

/** Routing as the driver leaves it (each listed MID to its context's bank, others to bank 0), per SMMU spec. */
const DEFAULT_ROUTING = new WeakMap<SmmuSpec, Uint32Array>();

function defaultRouting(spec: SmmuSpec): Uint32Array {
  let r = DEFAULT_ROUTING.get(spec);
  if (!r) {
    r = new Uint32Array(NUM_MIDS);
    for (let i = 0; i < spec.banks; i++) for (const m of spec.contexts.find((x) => x.index === i)?.mids ?? []) r[m] = i << 8;
    DEFAULT_ROUTING.set(spec, r);
  }
  return r;
}

/** Walks consume their result before the next one starts: every SMMU shares one. */
const WALK = new WalkResult();

export class Smmu {
  readonly name: string;
  readonly base: number;
  readonly banks: ContextBank[];
  /**
   * M2VCBR_N per master ID: CBNDX (15:8) names the bank a MID's transactions go to. Read only: shared by the
   * SMMUs of one spec until the first write (setM2vcbr) gives this SMMU its own copy.
   */
  m2vcbr: Uint32Array;
  private ownRouting = false;
  readonly tlb: Tlb;
  // Global registers that hold state; only CR and ESR have fields iommud reads, the rest are stored and read back.
  TLBRSW = 0;
  TLBTR0 = 0;
  TLBTR1 = 0;
  TLBTR2 = 0;
  TESTBUSCR = 0;
  CR = 0;
  EAR = 0;
  ESR = 0;
  ESRRESTORE = 0;
  ESYNR0 = 0;
  ESYNR1 = 0;
  RPU_ACR = 0;
  readonly res = new TxnResult();
  /**
   * The last FSR and FAR values fault() formatted, and their text. In a fault burst both stay as they are (FSR
   * sticky with MULTI set, FAR the first fault's address), and in hex()'s direct-mapped cache the two can share a
   * slot with each other or with the faulting addresses: then every fault built both strings again (about a third
   * of what a stream batch of faults allocated).
   */
  private fsrOf = -1;
  private fsrText = '';
  private farOf = -1;
  private farText = '';
  private readonly env: HwEnv;
  private readonly mem: PhysMemory;
  /** Stalled transfers with their original request, so a retry re-runs the whole transfer (made on the first). */
  private stalled: Map<string, TransferRequest> | null = null;

  constructor(spec: SmmuSpec, tlbEntries: number, tlbPolicy: TlbPolicy, env: HwEnv) {
    this.name = spec.name;
    this.base = spec.base;
    this.env = env;
    this.mem = env.mem;
    this.banks = Array.from({ length: spec.banks }, (_, i) => {
      const c = spec.contexts.find((x) => x.index === i);
      return new ContextBank(spec.name, i, c?.name ?? null, c?.mids ?? []);
    });
    this.tlb = new Tlb(tlbEntries, tlbPolicy, spec.banks);
    this.m2vcbr = defaultRouting(spec);
  }

  /** Writes M2VCBR_N of one MID (copying the shared routing first). */
  setM2vcbr(mid: number, value: number): void {
    if (!this.ownRouting) {
      if (this.m2vcbr[mid] === value >>> 0) return;
      this.m2vcbr = this.m2vcbr.slice();
      this.ownRouting = true;
    }
    this.m2vcbr[mid] = value;
  }

  private get stalledRequests(): Map<string, TransferRequest> {
    return (this.stalled ??= new Map());
  }

  /** Registers, routing and stalled transactions (the TLB is not kept: it refills, as after a reset). */
  snapshot(): SmmuSnapshot {
    return {
      m2vcbr: [...this.m2vcbr],
      CR: this.CR,
      ESR: this.ESR,
      globals: Object.fromEntries(GLOBAL_STATE_REGISTERS.map((r) => [r, this[r]])),
      banks: this.banks.map((b) => {
        const regs: Record<string, number> = {};
        for (const r of [...Object.keys(CONTEXT_REGISTERS), 'CBACR']) regs[r] = (b as unknown as Record<string, number>)[r]!;
        return { regs, faultMode: b.faultMode, faultInterrupt: b.faultInterrupt, domain: b.domain, injected: b.injected, stalls: b.stalls.map((s) => ({ ...s })), faults: b.faults };
      }),
      stalled: [...(this.stalled ?? [])].map(([id, r]) => [id, { ...r, data: r.data ? Buffer.from(r.data).toString('base64') : undefined }]),
    };
  }

  restore(s: SmmuSnapshot): void {
    s.m2vcbr.forEach((v, mid) => this.setM2vcbr(mid, v));
    for (const r of GLOBAL_STATE_REGISTERS) this[r] = s.globals?.[r] ?? 0;
    this.CR = s.CR;
    this.ESR = s.ESR;
    s.banks.forEach((x, i) => {
      const b = this.banks[i]!;
      Object.assign(b, x.regs);
      b.faultMode = x.faultMode;
      b.faultInterrupt = x.faultInterrupt;
      b.domain = x.domain;
      b.injected = x.injected;
      b.faults = x.faults;
      b.stalls.splice(0, b.stalls.length, ...x.stalls);
    });
    this.stalled?.clear();
    for (const [id, r] of s.stalled) this.stalledRequests.set(id, { ...r, data: r.data !== undefined ? Buffer.from(r.data, 'base64') : undefined });
  }

  resetTlb(): void {
    this.tlb.clear();
    for (const b of this.banks) b.tlbHits = b.tlbMisses = 0;
  }

  /** Where this SMMU's events go (MMIO writes through the stream report there too). */
  get sink(): EventSink {
    return this.env.sink;
  }

  /** TLB counters of one bank, or of the whole SMMU. */
  tlbStats(bank?: ContextBank): TlbStats {
    const banks = bank ? [bank] : this.banks;
    const t: TlbStats = { hits: 0, misses: 0, evictions: 0, invalidations: 0 };
    for (const b of banks) {
      t.hits += b.tlbHits;
      t.misses += b.tlbMisses;
      t.evictions += this.tlb.evictions[b.index]!;
      t.invalidations += this.tlb.invalidations[b.index]!;
    }
    return t;
  }

  /** The bank a master's transactions go to (M2VCBR_N.CBNDX). */
  bankOfMid(mid: number): ContextBank | undefined {
    return this.banks[(this.m2vcbr[mid]! >>> 8) & 0xff];
  }

  /**
   * One transaction of one page through a context bank. Allocation-free on the ok path; the result lives in
   * this.res until the next transaction.
   */
  translate(bank: ContextBank, iova: number, access: number, priv: boolean, mid: number): TxnResult {
    // The hot path, kept small so V8 inlines it: an enabled context, a single TLB hit whose descriptors have not
    // been written since the fill, and a permission already known to pass.
    if ((bank.SCTLR & SCTLR_M) !== 0 && bank.injected === null) {
      const e = this.tlb.lookup(bank.index, bank.CONTEXTIDR & 0xff, iova);
      if (e !== null && e !== MULTI_HIT) {
        if (
          e.gen === this.mem.gen && e.ttbr0 === bank.TTBR0 &&
          ((e.ok >>> ((bank.SCTLR & SCTLR_AFE ? 0 : 6) + access * 2 + (priv ? 1 : 0))) & 1) !== 0
        ) {
          bank.tlbHits++;
          const r = this.res;
          r.outcome = OUTCOME_OK;
          r.stale = false;
          r.tlb = TLB_HIT;
          r.paddr = iova + e.offset;
          r.pageSize = e.size;
          return r;
        }
      }
      return this.translateSlow(bank, iova, access, priv, mid, e);
    }
    return this.translateSlow(bank, iova, access, priv, mid, undefined);
  }

  /** Everything else: bypass, injected faults, misses and walks, stale checks, permission faults. */
  private translateSlow(
    bank: ContextBank,
    iova: number,
    access: number,
    priv: boolean,
    mid: number,
    looked: TlbEntry | null | typeof MULTI_HIT | undefined,
  ): TxnResult {
    const r = this.res;
    // fault and stall are meaningful only when outcome says so: the ok path leaves them as they were.
    r.stale = false;
    if ((bank.SCTLR & SCTLR_M) === 0) {
      bank.bypasses++;
      r.fault = null;
      r.outcome = OUTCOME_OK;
      r.paddr = iova;
      r.tlb = TLB_BYPASS;
      r.pageSize = SZ_4K;
      return r;
    }
    if (bank.injected !== null) {
      const kind = bank.injected;
      bank.injected = null;
      bank.injectedFaults++;
      r.tlb = TLB_MISS;
      return this.fault(bank, kind, iova, access, priv, mid);
    }
    const asid = bank.CONTEXTIDR & 0xff;
    const e = looked === undefined ? this.tlb.lookup(bank.index, asid, iova) : looked;
    if (e === MULTI_HIT) {
      r.tlb = TLB_HIT;
      return this.fault(bank, 'multi-hit', iova, access, priv, mid);
    }
    let perm: number;
    if (e !== null) {
      bank.tlbHits++;
      r.tlb = TLB_HIT;
      const m = this.mem;
      if (e.ttbr0 !== bank.TTBR0 || m.version(e.c1) !== e.v1 || m.version(e.c2) !== e.v2) this.revalidate(bank, e, iova);
      else e.gen = this.mem.gen;
      r.paddr = e.paBase + (iova - e.vaBase);
      r.pageSize = e.size;
      perm = e.perm;
    } else {
      bank.tlbMisses++;
      r.tlb = TLB_MISS;
      if (((bank.ACTLR >>> ACTLR_TLBMCFG_SHIFT) & 3) !== ACTLR_TLBMCFG_WALK) return this.fault(bank, 'tlb-miss', iova, access, priv, mid);
      const w = walk(this.env.mem, bank.TTBR0, iova, WALK);
      if (w.status !== WALK_OK) return this.fault(bank, w.status === WALK_EXTERNAL ? 'external' : 'translation', iova, access, priv, mid);
      // A successful walk fills the TLB even when the permission check then fails (a TLB of 0 entries keeps none).
      if (this.tlb.capacity !== 0) this.fill(bank, asid, w);
      r.paddr = w.paddr;
      r.pageSize = w.size;
      perm = w.perm;
    }
    // PERM_MASKS holds checkPerm's verdicts: the check itself runs only to name a denial.
    if (((PERM_MASKS[perm]! >>> ((bank.SCTLR & SCTLR_AFE ? 0 : 6) + access * 2 + (priv ? 1 : 0))) & 1) === 0) {
      return this.fault(bank, checkPerm(bank.SCTLR, perm, access, priv)!, iova, access, priv, mid);
    }
    r.outcome = OUTCOME_OK;
    return r;
  }

  /**
   * A whole transfer: every 4 KiB page translated first (each its own TLB lookup), then the bytes moved. A fault
   * on any page moves nothing.
   */
  transfer(bank: ContextBank, req: TransferRequest): AccessResult {
    const { iova, access, priv, mid } = req;
    const size = req.data ? req.data.length : Math.max(1, req.size);
    const segments: Segment[] = [];
    let stale = false;
    for (let a = iova; a < iova + size; ) {
      const len = Math.min(iova + size - a, SZ_4K - (a & (SZ_4K - 1)));
      const r = this.translate(bank, a, access, priv, mid);
      if (r.outcome !== OUTCOME_OK) {
        if (r.outcome === OUTCOME_STALLED) {
          this.stalledRequests.set(r.stall!, req);
          return this.afterStall(bank, r.stall!, r.fault!);
        }
        const fault = r.fault!;
        this.notifyFault(bank, fault);
        return { outcome: 'fault', fault };
      }
      stale ||= r.stale;
      segments.push({ iova: a, paddr: r.paddr, size: len, tlb: TLB_STATE_NAMES[r.tlb]! });
      a += len;
    }
    return moveSegments(this.env.mem, this.env.cache, bank.name, req, size, segments, stale);
  }

  /** Resolves a stalled transaction: retry re-runs it (a re-walk), terminate aborts it. */
  resume(bank: ContextBank, stallId: string, action: 'retry' | 'terminate' | 'timeout'): AccessResult {
    const i = bank.stalls.findIndex((s) => s.id === stallId);
    if (i < 0) fail('noStall', { stall: stallId, here: true });
    const [stall] = bank.stalls.splice(i, 1);
    // A stall raised by a bare translate (the binary stream) retries as a one-byte transaction.
    const req = this.stalled?.get(stallId) ?? { iova: stall!.iova, access: stall!.access, priv: stall!.priv, mid: stall!.mid, size: 0 };
    this.stalled?.delete(stallId);
    if (bank.stalls.length === 0) bank.FSR = (bank.FSR & ~FSR_SS) >>> 0;
    let result: AccessResult = { outcome: 'terminated' };
    if (action === 'retry') result = this.transfer(bank, req);
    this.env.sink.emit({
      type: 'resume',
      smmu: this.name,
      context: bank.index,
      device: bank.name,
      domain: bank.domain,
      stall: stall!.id,
      action,
      outcome: result.outcome,
    });
    return result;
  }

  /** Terminates every stalled transaction of a bank (detach, reset). */
  terminateStalls(bank: ContextBank): void {
    while (bank.stalls.length) this.resume(bank, bank.stalls[0]!.id, 'terminate');
  }

  /**
   * A V2P probe (V2PPR/V2PPW/V2PUR/V2PUW): the TLB answers first (never filled by a probe), else a walk; the
   * result and any fault go to PAR only.
   */
  probe(bank: ContextBank, va: number, priv: boolean, write: boolean): number {
    let par: number;
    if ((bank.SCTLR & SCTLR_M) === 0) par = (va & 0xfffff000) >>> 0;
    else {
      const e = this.tlb.lookup(bank.index, bank.CONTEXTIDR & 0xff, va);
      let size: number;
      let pa: number;
      let perm: number;
      let fault = 0;
      if (e === MULTI_HIT) fault = FAULT_KIND_BIT['multi-hit'];
      else if (e !== null) {
        size = e.size;
        pa = e.paBase + (va - e.vaBase);
        perm = e.perm;
      } else {
        const w = walk(this.env.mem, bank.TTBR0, va, WALK);
        if (w.status !== WALK_OK) fault = FAULT_KIND_BIT[w.status === WALK_EXTERNAL ? 'external' : 'translation'];
        else {
          size = w.size;
          pa = w.paddr;
          perm = w.perm;
        }
      }
      if (!fault) {
        const denied = checkPerm(bank.SCTLR, perm!, write ? ACCESS_WRITE : 0, priv);
        if (denied) fault = FAULT_KIND_BIT[denied];
      }
      if (fault) par = (PAR_FAULT | fault) >>> 0;
      else if (size! === 0x1000000) par = ((pa! & 0xff000000) | PAR_SS) >>> 0;
      else par = (pa! & 0xfffff000) >>> 0;
    }
    bank.PAR = par;
    return par;
  }

  private fill(bank: ContextBank, asid: number, w: WalkResult): void {
    const e = this.tlb.insert(bank.index, asid, pgsizeIndex(w.size), w.vaBase, w.size, w.paBase | 0, w.perm)!;
    const m = this.mem;
    e.ok = PERM_MASKS[w.perm]!;
    e.gen = m.gen;
    e.ttbr0 = bank.TTBR0;
    e.c1 = w.l1Addr >>> 16;
    e.v1 = m.version(e.c1);
    // A section has no L2 descriptor: its second chunk is the first again, so the hit path has no branch.
    e.c2 = w.l2Addr >= 0 ? w.l2Addr >>> 16 : e.c1;
    e.v2 = m.version(e.c2);
  }

  /**
   * The stale-TLB detector: the descriptors (or TTBR0) behind a hit may have changed. Re-walk; if the table still
   * gives the same translation the entry is refreshed, otherwise the hit is stale and reported (the transaction
   * still uses the entry, as hardware would).
   */
  private revalidate(bank: ContextBank, e: TlbEntry, iova: number): void {
    const w = walk(this.env.mem, bank.TTBR0, iova, WALK);
    const paddr = e.paBase + (iova - e.vaBase);
    const prot = permToProt(e.perm);
    if (w.status === WALK_OK && w.paddr === paddr && permToProt(w.perm) === prot) {
      const m = this.mem;
      e.ttbr0 = bank.TTBR0;
      e.c1 = w.l1Addr >>> 16;
      e.v1 = m.version(e.c1);
      e.c2 = w.l2Addr >= 0 ? w.l2Addr >>> 16 : e.c1;
      e.v2 = m.version(e.c2);
      e.gen = this.mem.gen;
      return;
    }
    this.res.stale = true;
    this.env.sink.emit({
      type: 'stale-tlb-hit',
      smmu: this.name,
      context: bank.index,
      device: bank.name,
      domain: bank.domain,
      iova: hex(iova),
      stale: { paddr: hex(paddr), prot: protToNames(prot) },
      current: w.status === WALK_OK ? { paddr: hex(w.paddr), prot: protToNames(permToProt(w.perm)) } : null,
    });
  }

  /**
   * Refuses (LIMIT) a request of `items` transactions that might not all find room to stall: checked before the
   * first one, so a refused batch leaves no stall, fault or register changed.
   */
  checkStallRoom(bank: ContextBank, items: number): void {
    if ((bank.ACTLR & ACTLR_CFCFG) === 0) return;
    if (items > this.env.maxStallsPerContext - bank.stalls.length) {
      fail('stallRoom', { context: bank.name ?? bank.index, limit: this.env.maxStallsPerContext, stalled: bank.stalls.length, items });
    }
  }

  /** Records a fault in FSR/FAR/FSYNR as the hardware does and, in stall mode, stalls the transaction. */
  private fault(bank: ContextBank, kind: FaultKind, iova: number, access: number, priv: boolean, mid: number): TxnResult {
    const r = this.res;
    const stallMode = (bank.ACTLR & ACTLR_CFCFG) !== 0;
    if (stallMode && bank.stalls.length >= this.env.maxStallsPerContext) {
      fail('stallsFull', { context: bank.name ?? bank.index, limit: this.env.maxStallsPerContext, stalled: bank.stalls.length });
    }
    bank.faults++;
    if (bank.FSR & FSR_FAULT_BITS) bank.FSR = (bank.FSR | FSR_MULTI) >>> 0;
    else {
      bank.FSR = (bank.FSR | FAULT_KIND_BIT[kind]) >>> 0;
      bank.FAR = iova >>> 0;
      bank.FSYNR0 = mid & 0xff;
      bank.FSYNR1 = (access === ACCESS_WRITE ? FSYNR1_AWRITE : 0) | (priv ? FSYNR1_APRIV : 0) | (access === ACCESS_EXEC ? FSYNR1_AINST : 0);
    }
    let stallId: string | null = null;
    if (stallMode) {
      stallId = this.env.nextStallId();
      bank.FSR = (bank.FSR | FSR_SS) >>> 0;
    }
    const smmu = this.name;
    const context = bank.index;
    const device = bank.name;
    const domain = bank.domain;
    const iovaHex = hex(iova);
    const accessName = ACCESS_NAMES[access]!;
    const flags = access === ACCESS_WRITE ? 1 : 0;
    if (bank.FSR !== this.fsrOf) this.fsrText = hex((this.fsrOf = bank.FSR));
    if (bank.FAR !== this.farOf) this.farText = hex((this.farOf = bank.FAR));
    const fsr = this.fsrText;
    const fsrBits = fsrBitNames(bank.FSR);
    const far = this.farText;
    const fsynr0 = hex(bank.FSYNR0);
    const fsynr1 = hex(bank.FSYNR1);
    const fault: FaultRecord = { smmu, context, device, domain, iova: iovaHex, access: accessName, priv, flags, kind, family: 'msm', fsr, fsrBits, far, fsynr0, fsynr1 };
    if (stallId) {
      // Set, not spread from a conditional literal: a fault without a stall (the usual one) makes no extra object.
      fault.stall = stallId;
      bank.stalls.push({ id: stallId, bank: bank.index, iova, access, priv, mid, fault, createdAt: Date.now() });
      this.env.onStall?.(this, bank, stallId);
    }
    r.fault = fault;
    r.stall = stallId;
    r.outcome = stallId ? OUTCOME_STALLED : OUTCOME_FAULT;
    if (bank.ACTLR & ACTLR_CFEIE) {
      // The event is a literal of its own, not `{ type, ...fault }`: a spread copies key by key, one of the fault
      // path's largest costs at fault rates. Same fields, same values (the record's are not changed after).
      const ev: Extract<EventBody, { type: 'fault'; family: 'msm' }> = { type: 'fault', smmu, context, device, domain, iova: iovaHex, access: accessName, priv, flags, kind, family: 'msm', fsr, fsrBits, far, fsynr0, fsynr1 };
      if (stallId) ev.stall = stallId;
      this.env.sink.emit(ev);
      if (stallId) this.env.sink.emit({ type: 'stall', stall: stallId, smmu: this.name, context: bank.index, device: bank.name, domain: bank.domain, fault });
    }
    return r;
  }

  /** After a stall: the IOMMU layer's fault handler may resolve it at once (one retry per transfer). */
  private afterStall(bank: ContextBank, stallId: string, fault: FaultRecord): AccessResult {
    const hook = this.env.faultHook;
    const answer = hook && bank.ACTLR & ACTLR_CFEIE ? hook(bank, fault) : undefined;
    if (answer === 'retry' || answer === 'terminate') return this.resume(bank, stallId, answer);
    return { outcome: 'stalled', stall: stallId, fault };
  }

  /** Non-stalling faults reach the IOMMU layer's handler too (report_iommu_fault). */
  notifyFault(bank: ContextBank, fault: FaultRecord): void {
    if (this.env.faultHook && bank.ACTLR & ACTLR_CFEIE) this.env.faultHook(bank, fault);
  }
}

/** permMask for every perm value (7 bits), computed once. */
const PERM_MASKS = Array.from({ length: 128 }, (_, perm) => permMask(perm));

/** The (AFE, access, priv) outcomes of checkPerm as a bit mask, for the TLB-hit fast path (TlbEntry.ok). */
export function permMask(perm: number): number {
  let m = 0;
  for (const [sctlr, shift] of [[SCTLR_AFE, 0], [0, 6]] as const) {
    for (let access = 0; access < 3; access++) {
      for (let p = 0; p < 2; p++) if (checkPerm(sctlr, perm, access, p === 1) === null) m |= 1 << (shift + access * 2 + p);
    }
  }
  return m;
}

/**
 * The permission check, in HARDWARE.md's order: access flag, privilege, write to read-only, exec through XN.
 * With SCTLR.AFE set AP[0] is the access flag (the simplified model the driver uses); clear, the full AP[2:0].
 */
export function checkPerm(sctlr: number, perm: number, access: number, priv: boolean): FaultKind | null {
  if (sctlr & SCTLR_AFE) {
    if (!(perm & PERM_AP0)) return 'access-flag';
    if (!priv && !(perm & PERM_AP1)) return 'permission';
    if (access === ACCESS_WRITE && perm & PERM_AP2) return 'permission';
  } else {
    const ap = ((perm & PERM_AP2) >>> 0) | (perm & 3);
    // AP[2:0]: 0 none, 1 priv RW, 2 priv RW/user RO, 3 RW, 4 reserved, 5 priv RO, 6/7 RO.
    const canRead = priv ? ap !== 0 && ap !== 4 : ap === 2 || ap === 3 || ap >= 6;
    const canWrite = priv ? ap >= 1 && ap <= 3 : ap === 3;
    if (!canRead || (access === ACCESS_WRITE && !canWrite)) return 'permission';
  }
  if (access === ACCESS_EXEC && perm & PERM_XN) return 'permission';
  return null;
}
