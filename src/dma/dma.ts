/**
 * The DMA API over the IOMMU API: per device a default DMA domain (type "dma", created on first use), an IOVA
 * allocator, dma_map_single / dma_map_sg / dma_unmap / dma_sync, strict or flush-queue invalidation, and the
 * DMA-debug checks (refusing where CONFIG_DMA_API_DEBUG only warns, so a rig sees the misuse).
 */
import { IommuError, fail, hex, refusal, type ErrorName, type ErrorParams, type DmaDebugReport } from '../errors.js';
import type { EventOf, EventSink } from '../events/types.js';
import type { HwContext } from '../hw/family.js';
import type { Domain } from '../iommu/domain.js';
import type { BatchOp, Iommu } from '../iommu/iommu.js';
import type { PageCounts } from '../pgtable/v7s.js';
import { FAMILIES } from '../hw/families.js';
import { IOMMU_READ, IOMMU_WRITE } from '../pgtable/desc.js';
import { IovaAllocator } from './iova.js';
import { MappingTable } from './mappings.js';
import type { DmaMaintenance } from './noncoherent.js';

export type DmaDirection = 'to-device' | 'from-device' | 'bidirectional';
export type DmaCheck = EventOf<'dma-debug'>['check'];
/** The templates of refused misuses (errors.ts): each reports its check's fields as details and as its event. */
type DmaDebugName = 'dmaUnknownHandle' | 'dmaSizeMismatch' | 'dmaDirectionMismatch' | 'dmaSyncDirection' | 'dmaSyncOutside' | 'dmaOverlap' | 'dmaDirectTaken';

const PAGE = 0x1000;
/** Flush queue (deferred policy): flush at this many pending unmaps or after FQ_TIMEOUT_MS, as Intel's batching. */
export const FQ_SIZE = 250;
export const FQ_TIMEOUT_MS = 10;

export interface DmaMapping {
  dmaAddr: number;
  size: number;
  dir: DmaDirection;
  /** Physical segments (one for map_single). */
  segments: Array<{ paddr: number; size: number; dmaAddr: number; bounce?: { paddr: number; slots: number } }>;
  iova: number;
  iovaBytes: number;
  /** Who owns the buffer (sessions with a CPU cache): the device from map or sync-for-device to sync-for-cpu. */
  owner?: 'cpu' | 'device';
}

/** How a device's DMA addresses are made: through its SMMU, or physical (direct, with bounce buffers). */
export type DmaMode = 'iommu' | 'direct';

export type DmaSnapshot = Array<{
  device: string;
  mode?: DmaMode;
  domain: string | null;
  iova: ReturnType<IovaAllocator['snapshot']> | null;
  flushPolicy: 'strict' | 'deferred';
  dmaLimit: number;
  mappings: DmaMapping[];
  fq: Array<{ iova: number }>;
}>;

export interface DeviceDmaState {
  device: string;
  mode: DmaMode;
  /** The default DMA domain (null in direct mode). */
  domain: Domain | null;
  iova: IovaAllocator | null;
  flushPolicy: 'strict' | 'deferred';
  dmaLimit: number;
  mappings: MappingTable<DmaMapping>;
  /** Unmapped ranges whose IOVAs wait for the flush queue (deferred policy). */
  fq: Array<{ iova: number }>;
  fqTimer: NodeJS.Timeout | null;
}

/** Bytes of IOVA space a segment takes: the whole pages it touches. */
const spanOf = (s: { paddr: number; size: number }): number => Math.ceil(((s.paddr % PAGE) + s.size) / PAGE) * PAGE;

function protOf(dir: DmaDirection): number {
  return dir === 'to-device' ? IOMMU_READ : IOMMU_READ | IOMMU_WRITE;
}

const writes = (dir: DmaDirection) => dir !== 'to-device';

/** Live mappings from which the overlap check asks the index rather than scanning them all. */
const INDEX_FROM = 16;
/** Flags of an indexed segment: its mapping lets the device write; it is gone (left in place until a compaction). */
const WRITES = 1;
const DEAD = 2;

/**
 * Every live segment of every device, sorted by physical start: with many mappings live, the DMA-debug overlap
 * check asks it instead of walking all of them (a driver with a thousand buffers mapped paid for each on every
 * map). Kept only while in use (`active`) and exact while not `stale`; the mapping tables stay the truth (a device
 * state replaced or dropped marks it stale, and the next question rebuilds it from them). A removed segment stays
 * in place, marked dead, until the dead are half the entries (then one pass drops them): unmapping a thousand
 * buffers in order cost a splice of the whole array each. Entries are columns of numbers (no object per segment)
 * beside the segment objects themselves, which a removal matches by identity.
 */
class OverlapIndex {
  private starts = new Float64Array(64);
  private ends = new Float64Array(64);
  private flags = new Uint8Array(64);
  private segs: Array<DmaMapping['segments'][number] | undefined> = [];
  private n = 0;
  private dead = 0;
  /** The longest segment indexed since the last rebuild: no overlap starts further below a range than this. */
  private maxLen = 0;
  active = false;
  stale = true;

  add(m: DmaMapping): void {
    if (!this.active || this.stale) return;
    const w = writes(m.dir) ? WRITES : 0;
    for (let k = 0; k < m.segments.length; k++) {
      const seg = m.segments[k]!;
      const start = seg.paddr;
      if (this.n === this.starts.length) this.grow();
      // Buffers mapped in address order (the common case) go at the end without a search.
      const i = this.n === 0 || this.starts[this.n - 1]! < start ? this.n : this.firstAtOrAbove(start);
      if (i < this.n) {
        this.starts.copyWithin(i + 1, i, this.n);
        this.ends.copyWithin(i + 1, i, this.n);
        this.flags.copyWithin(i + 1, i, this.n);
        this.segs.splice(i, 0, seg);
      } else this.segs[i] = seg;
      this.starts[i] = start;
      this.ends[i] = start + seg.size;
      this.flags[i] = w;
      this.n++;
      if (seg.size > this.maxLen) this.maxLen = seg.size;
    }
  }

  remove(m: DmaMapping): void {
    if (!this.active || this.stale) return;
    for (let k = 0; k < m.segments.length; k++) {
      const seg = m.segments[k]!;
      for (let i = this.firstAtOrAbove(seg.paddr); i < this.n && this.starts[i] === seg.paddr; i++) {
        if (this.segs[i] === seg && (this.flags[i]! & DEAD) === 0) {
          this.flags[i]! |= DEAD;
          this.segs[i] = undefined;
          this.dead++;
          break;
        }
      }
    }
    if (this.dead === this.n) this.clear();
    else if (2 * this.dead > this.n) this.compact();
  }

  rebuild(devices: Iterable<DeviceDmaState>): void {
    this.clear();
    this.active = true;
    this.stale = false;
    for (const st of devices) for (const m of st.mappings.values()) this.add(m);
  }

  /** Few mappings left: the scan is cheaper than keeping the index. */
  drop(): void {
    this.active = false;
    this.stale = true;
    this.clear();
  }

  /** Whether a live segment overlaps [paddr, paddr+size) where one of the two mappings lets the device write. */
  conflicts(paddr: number, size: number, dir: DmaDirection): boolean {
    const end = paddr + size;
    const w = writes(dir);
    const { starts, ends, flags } = this;
    for (let i = this.firstAtOrAbove(end) - 1; i >= 0; i--) {
      if (starts[i]! + this.maxLen <= paddr) break;
      const f = flags[i]!;
      if ((f & DEAD) === 0 && ends[i]! > paddr && (w || (f & WRITES) !== 0)) return true;
    }
    return false;
  }

  private clear(): void {
    for (let i = 0; i < this.n; i++) this.segs[i] = undefined;
    this.n = 0;
    this.dead = 0;
    this.maxLen = 0;
  }

  /** Drops the dead entries in one pass. */
  private compact(): void {
    const { starts, ends, flags, segs } = this;
    let to = 0;
    for (let i = 0; i < this.n; i++) {
      if ((flags[i]! & DEAD) !== 0) continue;
      starts[to] = starts[i]!;
      ends[to] = ends[i]!;
      flags[to] = flags[i]!;
      segs[to++] = segs[i];
    }
    for (let i = to; i < this.n; i++) segs[i] = undefined;
    this.n = to;
    this.dead = 0;
  }

  private grow(): void {
    const cap = 2 * this.starts.length;
    const starts = new Float64Array(cap);
    const ends = new Float64Array(cap);
    const flags = new Uint8Array(cap);
    starts.set(this.starts);
    ends.set(this.ends);
    flags.set(this.flags);
    this.starts = starts;
    this.ends = ends;
    this.flags = flags;
  }

  private firstAtOrAbove(start: number): number {
    const starts = this.starts;
    let a = 0;
    let b = this.n;
    while (a < b) {
      const m = (a + b) >>> 1;
      if (starts[m]! < start) a = m + 1;
      else b = m;
    }
    return a;
  }
}

export class DmaApi {
  readonly devices = new Map<string, DeviceDmaState>();
  /** How the flush-queue timer flushes: the session routes it through a command; alone, it flushes directly. */
  onTimerFlush: ((device: string) => void) | null = null;
  /** Cache maintenance, ownership and bounce buffers (sessions with a CPU cache or a bounce pool). */
  maint: DmaMaintenance | null = null;
  private readonly live = new OverlapIndex();
  /** Live mappings of every device (the overlap check's choice of scan or index); -1 when it must be counted again. */
  private mapped = -1;
  /** Rises whenever `devices` gets, replaces or drops a state or a state changes mode (see hot()). */
  private devicesGen = 0;
  /**
   * The last device acquire() or existing() found attached to its default DMA domain, with what that finding
   * depended on: the IOMMU's domains and attachments (its gen), `devices` (devicesGen) and the device's context.
   * While none has changed, the same call finds the same state, so it is returned without the lookups (a device's
   * DMA calls come in runs).
   */
  // Strings from the start (no device is ''): a comparison with null made each new session's first call deoptimize.
  private hotDevice = '';
  private hotBank: HwContext | null = null;
  private hotDomain: string | null = '';
  private hotGen = -1;
  private hotDevicesGen = -1;
  private hotState: DeviceDmaState | null = null;

  constructor(
    private readonly iommu: Iommu,
    private readonly sink: EventSink,
  ) {
    iommu.beforeDetach.push((domainId, device) => this.reportLeaks(device, domainId, 'detach'));
    iommu.beforeFree.push((domainId) => {
      for (const st of this.devices.values()) if (st.domain?.id === domainId) this.reportLeaks(st.device, domainId, 'domain-free');
    });
  }

  /** The device's DMA state, creating (and attaching) its default DMA domain on first use. */
  state(device: string): DeviceDmaState {
    return this.acquire(device);
  }

  /** Whether the last acquire() created the device's default domain (an out-value: acquire is on the hot path). */
  private created = false;

  /**
   * state(), noting in `created` whether this call created the default domain (a refused first mapping undoes
   * that). A device detached from its DMA domain gets it back on its next DMA call, leaked mappings and all, as
   * its default.
   */
  private acquire(device: string): DeviceDmaState {
    this.created = false;
    const known = this.hot(device);
    if (known !== null) return known;
    const cur = this.iommu.domainOf(device);
    if (cur && cur.type !== 'dma') {
      fail('dmaUnmanaged', { device, domain: cur.id });
    }
    const st = this.devices.get(device);
    if (st?.mode === 'direct') return st;
    if (st?.domain && this.iommu.domains.has(st.domain.id)) {
      if (!cur) this.iommu.attach(st.domain.id, device);
      if (!cur || cur === st.domain) return this.remember(device, st);
    }
    // A family whose devices share one aperture without isolation (the GART) shares one default DMA domain.
    const shared = cur ? undefined : this.sharedState(device);
    const domain = cur ?? shared?.domain ?? this.iommu.domainAlloc({ type: 'dma', flushPolicy: 'strict', label: `dma:${device}`, for: device });
    if (!cur) this.iommu.attach(domain.id, device);
    const limit = st?.dmaLimit ?? 0xffffffff;
    const fresh: DeviceDmaState = {
      device,
      mode: 'iommu',
      domain,
      iova: shared?.iova ?? this.allocatorFor(domain, limit),
      flushPolicy: st?.flushPolicy ?? 'strict',
      dmaLimit: st?.dmaLimit ?? 0xffffffff,
      mappings: new MappingTable(),
      fq: [],
      fqTimer: null,
    };
    this.devices.set(device, fresh);
    // A first state changes no live mapping; a replaced one takes its mappings along.
    if (st) this.changed();
    else this.devicesGen++;
    this.created = !cur;
    return this.remember(device, fresh);
  }

  /** The IOVA allocator of a DMA domain: its family's geometry (the GART's aperture), below the DMA limit. */
  private allocatorFor(domain: Domain, dmaLimit: number): IovaAllocator {
    const g = domain.table.geometry;
    return new IovaAllocator(Math.min(dmaLimit, g.start + g.size - 1), g.start);
  }

  /** Another device's live default DMA domain on the same IOMMU, when the family shares one. */
  private sharedState(device: string): DeviceDmaState | undefined {
    const smmu = this.iommu.soc.device(device).smmu;
    if (!FAMILIES[smmu.family].sharedDmaDomain) return undefined;
    for (const st of this.devices.values()) {
      if (st.device !== device && st.domain && st.domain.smmu === smmu && this.iommu.domains.has(st.domain.id)) return st;
    }
    return undefined;
  }

  /** The device's DMA state if it has one, refusing (DOMAIN_TYPE) a device on an unmanaged domain; creates nothing. */
  private existing(device: string): DeviceDmaState | undefined {
    const known = this.hot(device);
    if (known !== null) return known;
    const cur = this.iommu.domainOf(device);
    if (cur && cur.type !== 'dma') {
      fail('dmaUnmanaged', { device, domain: cur.id });
    }
    const st = this.devices.get(device);
    if (st !== undefined && st.mode === 'iommu' && cur !== null && cur === st.domain) return this.remember(device, st);
    return st && (st.mode === 'direct' || (st.domain && this.iommu.domains.has(st.domain.id))) ? st : undefined;
  }

  /** The state acquire() and existing() would find for the device, when it is the one they last found (see hotDevice). */
  private hot(device: string): DeviceDmaState | null {
    return device === this.hotDevice && this.hotGen === this.iommu.gen && this.hotDevicesGen === this.devicesGen && this.hotBank!.domain === this.hotDomain ? this.hotState : null;
  }

  /** Notes a state found attached to its default DMA domain (in iommu mode) for hot(); returns it. */
  private remember(device: string, st: DeviceDmaState): DeviceDmaState {
    this.hotDevice = device;
    this.hotBank = this.iommu.soc.device(device).bank;
    this.hotDomain = st.domain!.id;
    this.hotGen = this.iommu.gen;
    this.hotDevicesGen = this.devicesGen;
    this.hotState = st;
    return st;
  }

  /** `devices` changed in a way that may change the live mappings: the count and the overlap index are redone. */
  private changed(): void {
    this.live.stale = true;
    this.mapped = -1;
    this.devicesGen++;
  }

  /** Undoes acquire() for a refused first mapping: the default domain goes again. */
  private release(device: string, created: boolean): void {
    if (!created) return;
    const st = this.devices.get(device)!;
    this.devices.delete(device);
    this.changed();
    this.iommu.detach(st.domain!.id, device);
    if (![...this.devices.values()].some((o) => o.domain === st.domain)) this.iommu.domainFree(st.domain!.id);
  }

  configure(device: string, opts: { flushPolicy?: 'strict' | 'deferred'; dmaLimit?: number; mode?: DmaMode }): DeviceDmaState {
    // Checked before anything is created: a refused configuration must not create (and attach) a DMA domain.
    if (opts.dmaLimit !== undefined && (opts.dmaLimit < 0x1fff || opts.dmaLimit > 0xffffffff)) {
      fail('dmaLimitRange', { dmaLimit: opts.dmaLimit });
    }
    let st = this.existing(device) ?? this.devices.get(device);
    if (opts.mode !== undefined && opts.mode !== (st?.mode ?? 'iommu')) {
      if (st && st.mappings.size > 0) {
        fail('dmaModeBusy', { device, mappings: st.mappings.size });
      }
      if (opts.mode === 'direct') st = this.toDirect(device, st);
      else {
        st!.mode = 'iommu';
        this.changed();
      }
    }
    if (!st || st.mode === 'iommu') st = this.state(device);
    if (opts.dmaLimit !== undefined) {
      st.dmaLimit = opts.dmaLimit;
      if (st.iova && st.domain) {
        const g = st.domain.table.geometry;
        st.iova.limitPfn = Math.floor(Math.min(opts.dmaLimit, g.start + g.size - 1) / PAGE);
      }
    }
    if (opts.flushPolicy !== undefined) {
      if (opts.flushPolicy === 'strict') this.flushQueue(st);
      st.flushPolicy = opts.flushPolicy;
      if (st.domain) st.domain.flushPolicy = opts.flushPolicy;
    }
    return st;
  }

  /** Direct mode: the DMA domain goes (the context returns to bypass); DMA addresses are physical. */
  private toDirect(device: string, st: DeviceDmaState | undefined): DeviceDmaState {
    const cur = this.iommu.domainOf(device);
    if (cur && cur.type !== 'dma') {
      fail('directUnmanaged', { device, domain: cur.id });
    }
    const next: DeviceDmaState = {
      device,
      mode: 'direct',
      domain: null,
      iova: null,
      flushPolicy: st?.flushPolicy ?? 'strict',
      dmaLimit: st?.dmaLimit ?? 0xffffffff,
      mappings: new MappingTable(),
      fq: [],
      fqTimer: null,
    };
    if (st) this.flushQueue(st);
    if (st?.domain && this.iommu.domains.has(st.domain.id)) {
      if (cur === st.domain) this.iommu.detach(st.domain.id, device);
      // A default DMA domain other devices share (the GART's) stays theirs.
      if (![...this.devices.values()].some((o) => o !== st && o.domain === st.domain)) this.iommu.domainFree(st.domain.id);
    }
    this.devices.set(device, next);
    this.changed();
    return next;
  }

  /**
   * dma_map_single: maps [paddr, paddr+size) at a fresh IOVA; returns the DMA address. Its one segment is passed
   * in an array reused by every call (mapSg copies what it keeps).
   */
  map(device: string, paddr: number, size: number, dir: DmaDirection): DmaMapping {
    const s = this.oneSeg[0]!;
    s.paddr = paddr;
    s.size = size;
    return this.mapSg(device, this.oneSeg, dir);
  }
  private readonly oneSeg = [{ paddr: 0, size: 0 }];
  /** Page counts of the DMA API's maps (it reads none). */
  private readonly pages: PageCounts = [0, 0, 0, 0];

  /** dma_map_sg: segments laid out contiguously in IOVA space, each padded to whole pages. */
  mapSg(device: string, segs: ReadonlyArray<{ paddr: number; size: number }>, dir: DmaDirection): DmaMapping {
    if (segs.length === 0) fail('noSegments');
    for (const s of segs) {
      if (s.size <= 0 || s.paddr > 0xffffffff || s.paddr + s.size > 2 ** 32) fail('paddrRange', { paddr: s.paddr, size: s.size });
    }
    // Every check that can refuse comes before anything is created.
    for (const s of segs) this.checkOverlap(device, s.paddr, s.size, dir);
    // A remembered state (hot) is one in iommu mode: only without one can the device be in direct mode.
    const direct = this.hot(device) === null ? this.devices.get(device) : undefined;
    if (direct?.mode === 'direct') {
      this.existing(device);
      return this.mapDirect(direct, segs, dir);
    }
    let total = 0;
    for (const s of segs) total += spanOf(s);
    const pages = IovaAllocator.pagesFor(total);
    const st = this.acquire(device);
    const created = this.created;
    let iova: number;
    try {
      iova = st.iova!.alloc(pages);
    } catch (e) {
      this.release(device, created);
      throw e;
    }
    // Sized at once: a pushed-to empty array grows a backing store for 17 (and map_single's one segment is a
    // literal: new Array(n) is a runtime call).
    const prot = protOf(dir);
    const s0 = segs[0]!;
    const first = { paddr: s0.paddr, size: s0.size, dmaAddr: iova + (s0.paddr % PAGE) };
    const out: DmaMapping['segments'] = segs.length === 1 ? [first] : new Array(segs.length);
    out[0] = first;
    let size = s0.size;
    for (let i = 1, off = spanOf(s0); i < segs.length; i++) {
      const s = segs[i]!;
      out[i] = { paddr: s.paddr, size: s.size, dmaAddr: iova + off + (s.paddr % PAGE) };
      off += spanOf(s);
      size += s.size;
    }
    try {
      // Each segment's whole pages, one after another from iova (one segment: one map, no batch to build).
      if (segs.length === 1) this.iommu.mapIn(st.domain!, iova, segs[0]!.paddr - (segs[0]!.paddr % PAGE), total, prot, this.pages);
      else {
        const ops: BatchOp[] = [];
        for (let i = 0, off = 0; i < segs.length; i++) {
          const s = segs[i]!;
          ops.push({ op: 'map', iova: iova + off, paddr: s.paddr - (s.paddr % PAGE), size: spanOf(s), prot });
          off += spanOf(s);
        }
        this.iommu.batch(st.domain!.id, ops, true);
      }
    } catch (e) {
      st.iova!.undoAlloc(iova);
      this.release(device, created);
      throw e;
    }
    const m: DmaMapping = { dmaAddr: out[0]!.dmaAddr, size, dir, segments: out, iova, iovaBytes: total };
    st.mappings.set(m.dmaAddr, m);
    if (this.mapped >= 0) this.mapped++;
    this.live.add(m);
    this.maint?.mapped(device, m);
    return m;
  }

  /**
   * Direct mode: the DMA address is the physical address, unless a segment is not entirely ≤ the device's mask;
   * then it is bounced through consecutive slots of the bounce pool (swiotlb).
   */
  private mapDirect(st: DeviceDmaState, segs: ReadonlyArray<{ paddr: number; size: number }>, dir: DmaDirection): DmaMapping {
    const pool = this.maint?.pool ?? null;
    const out: DmaMapping['segments'] = [];
    const undo = () => {
      for (const s of out) if (s.bounce) pool!.free(s.bounce.paddr, s.bounce.slots);
    };
    try {
      for (const s of segs) {
        if (s.paddr + s.size - 1 <= st.dmaLimit) out.push({ paddr: s.paddr, size: s.size, dmaAddr: s.paddr });
        else {
          if (!pool) fail('noBouncePool', { device: st.device, paddr: s.paddr, size: s.size, dmaLimit: st.dmaLimit });
          const b = pool.alloc(s.size, st.dmaLimit);
          out.push({ paddr: s.paddr, size: s.size, dmaAddr: b.paddr, bounce: b });
        }
      }
    } catch (e) {
      undo();
      throw e;
    }
    const dmaAddr = out[0]!.dmaAddr;
    if (st.mappings.has(dmaAddr)) {
      undo();
      this.debug(st.device, 'dmaDirectTaken', { report: { check: 'overlapping-mapping', paddr: hex(segs[0]!.paddr), dmaAddr: hex(dmaAddr) }, device: st.device });
    }
    const m: DmaMapping = { dmaAddr, size: segs.reduce((a, s) => a + s.size, 0), dir, segments: out, iova: 0, iovaBytes: 0 };
    st.mappings.set(dmaAddr, m);
    if (this.mapped >= 0) this.mapped++;
    this.live.add(m);
    this.maint?.mapped(st.device, m);
    return m;
  }

  /** dma_unmap_single / dma_unmap_sg, with the debug checks of the handle, size and direction. */
  unmap(device: string, dmaAddr: number, size: number, dir: DmaDirection): DmaMapping {
    const st = this.existing(device);
    const m = st?.mappings.get(dmaAddr);
    if (!st || !m) this.debug(device, 'dmaUnknownHandle', { report: { check: 'unknown-handle', dmaAddr: hex(dmaAddr) } });
    if (m.size !== size) this.debug(st.device, 'dmaSizeMismatch', { report: { check: 'size-mismatch', dmaAddr: hex(dmaAddr), mapped: m.size, size } });
    if (m.dir !== dir) this.debug(st.device, 'dmaDirectionMismatch', { report: { check: 'direction-mismatch', dmaAddr: hex(dmaAddr), mapped: m.dir, dir } });
    if (st.mode === 'direct') {
      this.maint?.unmapped(st.device, m);
      st.mappings.delete(dmaAddr);
      if (this.mapped >= 0) this.mapped--;
      this.live.remove(m);
      return m;
    }
    this.iommu.unmapIn(st.domain!, m.iova, m.iovaBytes);
    this.maint?.unmapped(st.device, m);
    st.mappings.delete(dmaAddr);
    if (this.mapped >= 0) this.mapped--;
    this.live.remove(m);
    if (st.domain!.flushPolicy === 'strict') {
      // The IOMMU layer invalidated at once (the DMA domain is strict): the IOVA may be reused now.
      st.iova!.free(m.iova);
    } else this.enqueue(st, m.iova);
    return m;
  }

  /** dma_sync_single_for_cpu / _for_device: a range inside one live mapping (partial syncs are legal). */
  sync(device: string, dmaAddr: number, size: number, offset: number, forWhom: 'cpu' | 'device', dir?: DmaDirection): DmaMapping {
    const st = this.existing(device);
    const start = dmaAddr + offset;
    // Found by containment, not by its start address (the partial sync dmabounce once got wrong). Direct-mode
    // segments are not contiguous: a sync lies inside one of them.
    const inside = (lo: number, n: number) => start >= lo && start + size <= lo + n && dmaAddr >= lo;
    const m = st
      ? [...st.mappings.values()].find((x) => (st.mode === 'direct' ? x.segments.some((g) => inside(g.dmaAddr, g.size)) : inside(x.dmaAddr, x.size)))
      : undefined;
    if (!st || !m) this.debug(device, 'dmaSyncOutside', { report: { check: 'sync-outside-mapping', dmaAddr: hex(dmaAddr), offset, size }, start });
    if (dir !== undefined && dir !== m.dir) this.debug(st.device, 'dmaSyncDirection', { report: { check: 'direction-mismatch', dmaAddr: hex(dmaAddr), mapped: m.dir, dir }, for: forWhom });
    this.maint?.synced(st.device, m, start, size, forWhom);
    return m;
  }

  /** Applies the flush queue now: one invalidation for everything pending, then the IOVAs are reusable. */
  flushQueue(st: DeviceDmaState): void {
    if (st.fqTimer) clearTimeout(st.fqTimer);
    st.fqTimer = null;
    if (st.fq.length === 0 || !st.domain) return;
    this.iommu.sync(st.domain.id);
    for (const e of st.fq.splice(0)) st.iova!.free(e.iova);
  }

  close(): void {
    for (const st of this.devices.values()) if (st.fqTimer) clearTimeout(st.fqTimer);
  }

  snapshot(): DmaSnapshot {
    return [...this.devices.values()].map((st) => ({
      device: st.device,
      ...(st.mode === 'direct' ? { mode: st.mode } : {}),
      domain: st.domain?.id ?? null,
      iova: st.iova?.snapshot() ?? null,
      flushPolicy: st.flushPolicy,
      dmaLimit: st.dmaLimit,
      mappings: [...st.mappings.values()].map((m) => ({ ...m, segments: m.segments.map((x) => ({ ...x, ...(x.bounce ? { bounce: { ...x.bounce } } : {}) })) })),
      fq: st.fq.map((e) => ({ ...e })),
    }));
  }

  restore(s: DmaSnapshot): void {
    this.close();
    this.devices.clear();
    this.changed();
    const byDomain = new Map<string, IovaAllocator>();
    for (const x of s) {
      // Devices sharing one default DMA domain (the GART's) share its allocator; direct mode has none.
      let iova: IovaAllocator | null = null;
      if (x.iova && x.domain !== null) {
        iova = byDomain.get(x.domain) ?? null;
        if (!iova) {
          iova = new IovaAllocator(x.dmaLimit);
          iova.restore(x.iova);
          byDomain.set(x.domain, iova);
        }
      }
      const st: DeviceDmaState = {
        device: x.device,
        mode: x.mode ?? 'iommu',
        domain: x.domain !== null ? this.iommu.domain(x.domain) : null,
        iova,
        flushPolicy: x.flushPolicy,
        dmaLimit: x.dmaLimit,
        mappings: new MappingTable(),
        fq: [],
        fqTimer: null,
      };
      for (const m of x.mappings) st.mappings.set(m.dmaAddr, { ...m, segments: m.segments.map((g) => ({ ...g, ...(g.bounce ? { bounce: { ...g.bounce } } : {}) })) });
      this.devices.set(x.device, st);
      for (const e of x.fq) this.enqueue(st, e.iova);
    }
  }

  private enqueue(st: DeviceDmaState, iova: number): void {
    st.fq.push({ iova });
    if (st.fq.length >= FQ_SIZE) this.flushQueue(st);
    else if (!st.fqTimer) {
      st.fqTimer = setTimeout(() => (this.onTimerFlush ? this.onTimerFlush(st.device) : this.flushQueue(st)), FQ_TIMEOUT_MS);
      st.fqTimer.unref();
    }
  }

  private checkOverlap(device: string, paddr: number, size: number, dir: DmaDirection): void {
    let n = this.mapped;
    if (n < 0) {
      n = 0;
      for (const st of this.devices.values()) n += st.mappings.size;
      this.mapped = n;
    }
    if (n >= INDEX_FROM) {
      if (this.live.stale) this.live.rebuild(this.devices.values());
      if (!this.live.conflicts(paddr, size, dir)) return;
    } else if (this.live.active) this.live.drop();
    // The refusal names the first conflicting mapping in device and mapping order, as the full scan finds it.
    for (const other of this.devices.values()) {
      const table = other.mappings;
      for (let e = 0; e < table.slots; e++) {
        const m = table.valueAt(e);
        if (m === undefined) continue;
        for (let k = 0; k < m.segments.length; k++) {
          const s: DmaMapping['segments'][number] = m.segments[k]!;
          if (s.paddr < paddr + size && paddr < s.paddr + s.size && (writes(dir) || writes(m.dir))) {
            this.debug(device, 'dmaOverlap', {
              report: { check: 'overlapping-mapping', paddr: hex(paddr), other: { device: other.device, dmaAddr: hex(m.dmaAddr), paddr: hex(s.paddr), size: s.size, dir: m.dir } },
              paddr,
              size,
              other: { device: other.device, dmaAddr: m.dmaAddr, dir: m.dir },
            });
          }
        }
      }
    }
  }

  /** A refused misuse: the DMA_DEBUG error and a `dma-debug` event carry the same details (declared per check). */
  private debug<K extends DmaDebugName>(device: string, name: K, params: ErrorParams<K>): never {
    // The report is typed per template (errors.ts); the message is the template's.
    const err = (refusal as (n: ErrorName, p: object) => IommuError)(name, params);
    this.sink.emit({ type: 'dma-debug', device, domain: this.iommu.domainOf(device)?.id ?? null, message: err.message, ...(params.report as DmaDebugReport) });
    throw err;
  }

  private reportLeaks(device: string, domainId: string, why: 'detach' | 'domain-free'): void {
    const st = this.devices.get(device);
    if (!st || st.domain?.id !== domainId) return;
    for (const m of st.mappings.values()) {
      this.sink.emit({ type: 'dma-debug', device, domain: domainId, check: 'leak', reason: why, dmaAddr: hex(m.dmaAddr), size: m.size, dir: m.dir });
    }
    this.flushQueue(st);
    // Detached, the device keeps its default domain (and its allocator) for its next DMA call; freed, it is gone.
    if (why === 'domain-free') {
      this.devices.delete(device);
      this.changed();
    }
  }
}
