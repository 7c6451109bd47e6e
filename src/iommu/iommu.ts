/**
 * The Linux IOMMU API over the emulated hardware: domain_alloc/free, attach/detach, map/unmap (all or nothing),
 * iova_to_phys, flush_iotlb_all / range flush, iotlb_sync, and report_iommu_fault to a domain's handler.
 */
import { IommuError, fail, hex } from '../errors.js';
import { emitMap, emitUnmap } from '../events/bus.js';
import type { EventSink } from '../events/types.js';
import type { FaultBase, HwContext, IommuInstance } from '../hw/family.js';
import { FAMILIES } from '../hw/families.js';
import type { Soc } from '../hw/soc.js';
import { PGSIZES, PGSIZE_NAMES, protToNames } from '../pgtable/desc.js';
import type { FlushOps, PageCounts } from '../pgtable/v7s.js';
import { Domain, addRange, type DomainType, type FaultHandler, type FlushPolicy, type IovaRange } from './domain.js';

export interface DomainOptions {
  pgsizes?: number[];
  flushPolicy?: FlushPolicy;
  partialUnmap?: 'split' | 'refuse';
  label?: string | null;
  type?: DomainType;
  /** The device the domain is for: its IOMMU's family sets the table format and rules (API.md `for`). */
  for?: string;
}

export type BatchOp =
  | { op: 'map'; iova: number; paddr: number; size: number; prot: number }
  | { op: 'unmap'; iova: number; size: number };

export type BatchResult = { op: 'map'; iova: number; size: number; pages: PageCounts } | { op: 'unmap'; unmapped: number };

export interface IommuSnapshot {
  domainSeq: number;
  domains: Array<{
    id: string;
    type: DomainType;
    cfg: { pgsizeBitmap: number; partialUnmap: 'split' | 'refuse' };
    flushPolicy: FlushPolicy;
    label: string | null;
    /** The table's root (L1 address; the GART's aperture base). */
    l1: number;
    /** The IOMMU the domain was made for (absent in older snapshots: the first msm one). */
    smmu?: string;
    /** Table state outside RAM (the GART's entries). */
    table?: unknown;
    attached: string[];
    pending: IovaRange[];
    pages: PageCounts;
  }>;
}

export interface IommuLimits {
  maxDomains: number;
  /** Leaf descriptors (pages of any size) mapped across the session's domains. */
  maxMappedPages: number;
}

/**
 * Collects what one operation asks to invalidate; applied only once the operation has succeeded. One per Iommu,
 * emptied by each batch: its first `n` ranges are the batch's, the objects reused by the next batch (they never
 * leave the Iommu: a deferred domain's pending list takes copies).
 */
class Gather implements FlushOps {
  ranges: IovaRange[] = [];
  n = 0;
  addPage(iova: number, size: number): void {
    // Unmaps walk upwards: the common case extends the last range in place.
    const n = this.n;
    const last = n === 0 ? undefined : this.ranges[n - 1]!;
    if (last !== undefined && last.iova + last.size === iova) last.size += size;
    else if (last === undefined || last.iova + last.size < iova) this.push(iova, size);
    else {
      const merged = addRange(this.ranges.slice(0, n), iova, size);
      this.n = 0;
      for (const r of merged) this.push(r.iova, r.size);
    }
  }
  private push(iova: number, size: number): void {
    const r = this.ranges[this.n];
    if (r === undefined) this.ranges.push({ iova, size });
    else {
      r.iova = iova;
      r.size = size;
    }
    this.n++;
  }
  flushWalk(): void {
    // No walk cache is modelled (HARDWARE.md): leaf invalidation via addPage is what the TLB needs.
  }
}

export class Iommu {
  readonly domains = new Map<string, Domain>();
  /** Called before a device leaves a domain / before a domain is freed (the DMA layer reports leaks there). */
  readonly beforeDetach: Array<(domain: string, device: string) => void> = [];
  readonly beforeFree: Array<(domain: string) => void> = [];
  private domainSeq = 0;
  /**
   * Rises whenever a domain comes or goes or a device is attached or detached through this API: a caller that
   * found a device's domain may keep it while this (and the device's context) has not changed.
   */
  gen = 0;
  /**
   * Leaves of the domains map/unmap count (d.pages), summed as they change: the page limit's check read every
   * domain's counts on each operation. Domains whose table counts its own leaves (the GART's entries can be
   * written underneath) are asked at each check instead.
   */
  private countedLeaves = 0;
  private readonly selfCounting = new Set<Domain>();
  private readonly gather = new Gather();
  private readonly delta: PageCounts = [0, 0, 0, 0];
  /** The one op of map() and unmap(), reused (read before their event is emitted, so a listener may map again). */
  private readonly oneMap = { op: 'map' as const, iova: 0, paddr: 0, size: 0, prot: 0 };
  private readonly oneMapOps: readonly BatchOp[] = [this.oneMap];
  private readonly oneUnmap = { op: 'unmap' as const, iova: 0, size: 0 };
  private readonly oneUnmapOps: readonly BatchOp[] = [this.oneUnmap];

  constructor(
    readonly soc: Soc,
    private readonly sink: EventSink,
    readonly limits: IommuLimits = { maxDomains: 1024, maxMappedPages: 4 * 1024 * 1024 },
  ) {
    soc.faultReport = (ctx, fault) => this.reportFault(ctx, fault);
  }

  domain(id: string): Domain {
    const d = this.domains.get(id);
    if (!d) fail('noDomain', { domain: id });
    return d;
  }

  /** The domain a device is attached to, or null. */
  domainOf(device: string): Domain | null {
    const bank = this.soc.devices.get(device)?.bank;
    return bank?.domain ? (this.domains.get(bank.domain) ?? null) : null;
  }

  domainAlloc(opts: DomainOptions = {}): Domain {
    if (this.domains.size >= this.limits.maxDomains) {
      fail('tooManyDomains', { limit: this.limits.maxDomains });
    }
    const smmu = this.instanceFor(opts.for);
    const def = FAMILIES[smmu.family];
    const pgsizes = opts.pgsizes ?? [...def.pgsizes];
    let bitmap = 0;
    for (const s of pgsizes) {
      if (!(PGSIZES as readonly number[]).includes(s)) {
        fail('pgsizeUnknown', { size: s, pgsizes });
      }
      if (!def.pgsizes.includes(s)) fail('pgsizeUnsupported', { size: s, pgsizes, family: smmu.family });
      bitmap |= s;
    }
    if (bitmap === 0) fail('pgsizesEmpty', { pgsizes });
    const table = this.soc.mem.atomically(() => def.createTable({ mem: this.soc.mem, pool: this.soc.ptPool }, smmu));
    const id = `dom-${++this.domainSeq}`;
    const d = new Domain(
      id,
      opts.type ?? 'unmanaged',
      { pgsizeBitmap: bitmap, partialUnmap: opts.partialUnmap ?? 'split' },
      opts.flushPolicy ?? 'strict',
      table,
      opts.label ?? null,
      smmu,
    );
    this.domains.set(id, d);
    this.gen++;
    if (table.pageCounts) this.selfCounting.add(d);
    this.sink.emit({ type: 'domain', action: 'alloc', domain: id, family: smmu.family, ttbr0: hex(table.root) });
    return d;
  }

  /** The IOMMU a new domain is made for: the device's, else the first msm one, else the profile's first. */
  private instanceFor(device: string | undefined): IommuInstance {
    if (device !== undefined) return this.soc.device(device).smmu;
    return this.soc.smmus.find((s) => s.family === 'msm') ?? this.soc.smmus[0]!;
  }

  domainFree(id: string): void {
    const d = this.domain(id);
    if (d.attached.size) {
      fail('domainAttached', { domain: id, attached: [...d.attached].map((x) => x.name) });
    }
    for (const f of this.beforeFree) f(id);
    this.soc.mem.atomically(() => d.table.free());
    this.domains.delete(id);
    this.gen++;
    if (!this.selfCounting.delete(d)) this.countedLeaves -= d.leafCount;
    this.sink.emit({ type: 'domain', action: 'free', domain: id });
  }

  /** iommu_attach_device: the device's IOMMU programs its context as its driver does. */
  attach(id: string, deviceName: string, replace = false): Domain {
    const d = this.domain(id);
    const dev = this.soc.device(deviceName);
    const cur = dev.bank.domain;
    if (cur === id) return d;
    if (dev.smmu.family !== d.family) {
      fail('familyMismatch', { domain: id, device: deviceName, domainFamily: d.family, deviceFamily: dev.smmu.family });
    }
    if (cur !== null && !replace) {
      fail('deviceBusy', { device: deviceName, domain: cur });
    }
    const def = FAMILIES[d.family];
    if (d.type === 'dma' && d.attached.size && !def.sharedDmaDomain) {
      fail('dmaDomainTaken', { domain: id });
    }
    if (d.attached.size >= def.maxDevicesPerDomain) {
      const holder = [...d.attached][0]!.name;
      fail('oneDevicePerDomain', { family: d.family, device: deviceName, domain: id, attached: holder });
    }
    dev.smmu.checkAttach?.(dev.bank, d.table, cur !== null);
    if (cur !== null) {
      // Switching page tables on the fly: the context stays enabled, its TLB entries go.
      for (const f of this.beforeDetach) f(cur, deviceName);
      const old = this.domains.get(cur)!;
      old.attached.delete(dev);
      d.attached.add(dev);
      dev.smmu.switchContext(dev.bank, d.table, id);
      this.gen++;
      this.sink.emit({ type: 'attach', domain: id, device: deviceName, replaced: cur, ttbr0: hex(dev.smmu.tableRegister(dev.bank)) });
      return d;
    }
    dev.smmu.attachContext(dev.bank, d.table, id);
    d.attached.add(dev);
    this.gen++;
    this.sink.emit({ type: 'attach', domain: id, device: deviceName, ttbr0: hex(dev.smmu.tableRegister(dev.bank)) });
    return d;
  }

  /** iommu_detach_device: the context stops translating as its family's driver leaves it. */
  detach(id: string, deviceName: string): Domain {
    const d = this.domain(id);
    const dev = this.soc.device(deviceName);
    if (dev.bank.domain !== id) {
      fail('notAttached', { device: deviceName, domain: id });
    }
    for (const f of this.beforeDetach) f(id, deviceName);
    this.sink.emit({ type: 'detach', domain: id, device: deviceName });
    dev.smmu.detachContext(dev.bank);
    d.attached.delete(dev);
    this.gen++;
    return d;
  }

  /**
   * One map (iommu_map); `allowDma`: the DMA API mapping on its own domain. `pages` receives the page counts (the
   * DMA API, which reads none, passes one array for all its maps).
   */
  map(id: string, iova: number, paddr: number, size: number, prot: number, allowDma = false, pages: PageCounts = [0, 0, 0, 0]): { iova: number; size: number; pages: PageCounts } {
    this.mapIn(this.writable(id, allowDma), iova, paddr, size, prot, pages);
    return { iova, size, pages };
  }

  /**
   * map() on a domain the caller holds and knows is live: the DMA API on its own domain (no lookup by id, no
   * DOMAIN_TYPE check). The page counts go to `pages`.
   */
  mapIn(d: Domain, iova: number, paddr: number, size: number, prot: number, pages: PageCounts): void {
    const op = this.oneMap;
    op.iova = iova;
    op.paddr = paddr;
    op.size = size;
    op.prot = prot;
    pages[0] = pages[1] = pages[2] = pages[3] = 0;
    this.apply(d, this.oneMapOps, null, pages);
  }

  /** One unmap (iommu_unmap): bytes unmapped. */
  unmap(id: string, iova: number, size: number, allowDma = false): number {
    return this.unmapIn(this.writable(id, allowDma), iova, size);
  }

  /** unmap() on a domain the caller holds and knows is live (see mapIn). */
  unmapIn(d: Domain, iova: number, size: number): number {
    const op = this.oneUnmap;
    op.iova = iova;
    op.size = size;
    return this.apply(d, this.oneUnmapOps, null, null);
  }

  /**
   * Map and unmap operations applied in order, all or nothing: any refusal rolls the page table and the pool
   * back; invalidations and events happen only once everything has succeeded.
   */
  batch(id: string, ops: readonly BatchOp[], allowDma = false): BatchResult[] {
    const d = this.writable(id, allowDma);
    const results = new Array<BatchResult>(ops.length);
    this.apply(d, ops, results, null);
    return results;
  }

  /** The domain a map or unmap may change: a DMA domain only for the DMA API (`allowDma`). */
  private writable(id: string, allowDma: boolean): Domain {
    const d = this.domain(id);
    if (d.type === 'dma' && !allowDma) {
      fail('dmaManaged', { domain: id });
    }
    return d;
  }

  /**
   * The body of batch(), map() and unmap(): with `results`, each op's result goes there; without (one op, map()
   * and unmap()), a map's page counts go to `pages` and an unmap's bytes are returned, so a single operation
   * allocates no result objects.
   */
  private apply(d: Domain, ops: readonly BatchOp[], results: BatchResult[] | null, pages: PageCounts | null): number {
    // Scratch reused by every batch (a DMA map+unmap is two batches).
    const gather = this.gather;
    gather.n = 0;
    const delta = this.delta;
    delta[0] = delta[1] = delta[2] = delta[3] = 0;
    const leavesBefore = this.totalLeaves();
    const mem = this.soc.mem;
    const owner = mem.begin();
    let unmapped = 0;
    try {
      for (let i = 0; i < ops.length; i++) {
        const op = ops[i]!;
        try {
          if (op.op === 'map') {
            const added: PageCounts = results ? [0, 0, 0, 0] : pages!;
            d.table.map(d.cfg, op.iova, op.paddr, op.size, op.prot, added);
            for (let k = 0; k < 4; k++) delta[k]! += added[k]!;
            if (results) results[i] = { op: 'map', iova: op.iova, size: op.size, pages: added };
          } else {
            unmapped = d.table.unmap(d.cfg, op.iova, op.size, delta, gather);
            if (results) results[i] = { op: 'unmap', unmapped };
          }
        } catch (e) {
          if (e instanceof IommuError && ops.length > 1) {
            throw e.within(`op ${i}`, { op: i });
          }
          throw e;
        }
      }
      const total = leavesBefore + delta[0] + delta[1] + delta[2] + delta[3];
      if (total > this.limits.maxMappedPages) {
        fail('tooManyPages', { limit: this.limits.maxMappedPages });
      }
      if (owner) mem.commit();
    } catch (e) {
      // All or nothing: the page table and the pool go back to where they were (mem.atomically, inlined).
      if (owner) mem.rollback();
      throw e;
    }
    for (let k = 0; k < 4; k++) d.pages[k]! += delta[k]!;
    if (d.table.pageCounts === undefined) this.countedLeaves += delta[0] + delta[1] + delta[2] + delta[3];
    this.applyGather(d, gather);
    const id = d.id;
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      const r = results ? results[i]! : null;
      if (op.op === 'map') {
        const added = r ? (r as { pages: PageCounts }).pages : pages!;
        emitMap(this.sink, id, op.iova, op.paddr, op.size, protToNames(op.prot), eventPages(added));
      } else {
        emitUnmap(this.sink, id, op.iova, op.size, r ? (r as { unmapped: number }).unmapped : unmapped);
      }
    }
    return unmapped;
  }

  iovaToPhys(id: string, iova: number): { iova: number; paddr: number; pageSize: number; prot: number } {
    const d = this.domain(id);
    const r = d.table.lookup(iova);
    if (!r) fail('notMapped', { iova });
    return { iova, ...r };
  }

  /** flush_iotlb_all, or a range flush, on every attached context. */
  flush(id: string, iova?: number, size?: number): { contexts: number; invalidated: number } {
    const d = this.domain(id);
    let invalidated = 0;
    for (const dev of d.attached) {
      invalidated += dev.smmu.flushContext(dev.bank, iova === undefined ? undefined : { iova, size: size ?? 0x1000 });
    }
    if (iova === undefined) d.pending = [];
    this.sink.emit({ type: 'flush', domain: id, ...(iova !== undefined ? { iova: hex(iova), size: size ?? 0x1000 } : {}), contexts: d.attached.size, invalidated });
    return { contexts: d.attached.size, invalidated };
  }

  /** iotlb_sync: applies the gathered invalidations of a deferred domain. */
  sync(id: string): { invalidated: number; ranges: IovaRange[] } {
    const d = this.domain(id);
    const ranges = d.pending;
    d.pending = [];
    const invalidated = this.invalidateRanges(d, ranges);
    this.sink.emit({ type: 'sync', domain: id, ranges: ranges.map((r) => ({ iova: hex(r.iova), size: r.size })), invalidated });
    return { invalidated, ranges };
  }

  /** Mappings merged into extents: adjacent pages with contiguous paddr and equal prot. */
  mappings(id: string, from = 0, to = 2 ** 32, limit = 1000): Array<{ iova: number; paddr: number; size: number; pageSize: number; prot: number }> {
    const d = this.domain(id);
    const out: Array<{ iova: number; paddr: number; size: number; pageSize: number; prot: number }> = [];
    d.table.forEachLeaf(from, to, (iova, paddr, size, prot) => {
      const last = out[out.length - 1];
      if (last && last.iova + last.size === iova && last.paddr + last.size === paddr && last.prot === prot) {
        last.size += size;
        if (size > last.pageSize) last.pageSize = size;
        return;
      }
      if (out.length === limit) return false;
      out.push({ iova, paddr, size, pageSize: size, prot });
    });
    return out;
  }

  snapshot(): IommuSnapshot {
    return {
      domainSeq: this.domainSeq,
      domains: [...this.domains.values()].map((d) => ({
        id: d.id,
        type: d.type,
        cfg: { ...d.cfg },
        flushPolicy: d.flushPolicy,
        label: d.label,
        l1: d.table.root,
        smmu: d.smmu.name,
        ...(FAMILIES[d.family].tableState(d.table) !== undefined ? { table: FAMILIES[d.family].tableState(d.table) } : {}),
        attached: [...d.attached].map((x) => x.name),
        pending: d.pending.map((r) => ({ ...r })),
        pages: [...d.pages] as PageCounts,
      })),
    };
  }

  /** Rebuilds the domains over tables already in RAM (the snapshot restored the memory first). */
  restore(s: IommuSnapshot): void {
    this.domainSeq = s.domainSeq;
    this.gen++;
    this.domains.clear();
    this.selfCounting.clear();
    this.countedLeaves = 0;
    for (const x of s.domains) {
      const smmu = x.smmu !== undefined ? this.soc.smmu(x.smmu) : this.instanceFor(undefined);
      const table = FAMILIES[smmu.family].restoreTable({ mem: this.soc.mem, pool: this.soc.ptPool }, smmu, x.l1, x.table);
      const d = new Domain(x.id, x.type, { ...x.cfg }, x.flushPolicy, table, x.label, smmu);
      for (const name of x.attached) d.attached.add(this.soc.device(name));
      d.pending = x.pending.map((r) => ({ ...r }));
      d.pages.splice(0, 4, ...x.pages);
      this.domains.set(d.id, d);
      if (table.pageCounts) this.selfCounting.add(d);
      else this.countedLeaves += d.leafCount;
      for (const dev of d.attached) dev.smmu.adoptTable?.(d.id, table);
    }
  }

  setFaultHandler(id: string, handler: FaultHandler | null): void {
    this.domain(id).faultHandler = handler;
  }

  private reportFault(bank: HwContext, fault: FaultBase): 'retry' | 'terminate' | void {
    const d = bank.domain ? this.domains.get(bank.domain) : undefined;
    if (!d?.faultHandler || !bank.name) return;
    return d.faultHandler({ domain: d.id, device: bank.name, iova: Number(fault.iova), flags: fault.flags });
  }

  private applyGather(d: Domain, gather: Gather): void {
    if (gather.n === 0) return;
    if (d.flushPolicy === 'strict') this.invalidateRanges(d, gather.ranges, gather.n);
    else for (let i = 0; i < gather.n; i++) d.pending = addRange(d.pending, gather.ranges[i]!.iova, gather.ranges[i]!.size);
  }

  /** Invalidates the first n ranges (all by default) on every context attached to the domain. */
  private invalidateRanges(d: Domain, ranges: IovaRange[], n = ranges.length): number {
    let count = 0;
    for (const dev of d.attached) for (let i = 0; i < n; i++) count += dev.smmu.flushContext(dev.bank, ranges[i]!);
    return count;
  }

  private totalLeaves(): number {
    let n = this.countedLeaves;
    if (this.selfCounting.size !== 0) for (const d of this.selfCounting) n += d.leafCount;
    return n;
  }
}

export function pageCountsObject(p: PageCounts): Record<(typeof PGSIZE_NAMES)[number], number> {
  return { '4K': p[0], '64K': p[1], '1M': p[2], '16M': p[3] };
}

/** Page counts of a map event: one frozen object per count of 4K pages alone (the DMA API's every map), else new. */
function eventPages(p: PageCounts): Readonly<Record<(typeof PGSIZE_NAMES)[number], number>> {
  const n = p[0];
  if (p[1] !== 0 || p[2] !== 0 || p[3] !== 0 || n >= SMALL_ONLY.length) return pageCountsObject(p);
  return (SMALL_ONLY[n] ??= Object.freeze(pageCountsObject(p)));
}
const SMALL_ONLY = new Array<Readonly<Record<(typeof PGSIZE_NAMES)[number], number>> | undefined>(257);
