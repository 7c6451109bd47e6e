/**
 * Page-table operations over tables that live in emulated RAM (the io-pgtable-arm-v7s role): walk, map, unmap
 * with the pinned split rule, iova_to_phys, dumps. Tables are data in memory, not objects. This module never
 * touches a TLB: it reports what must be invalidated through the caller's gather.
 */
import { IommuError } from '../errors.js';
import { FULL_GEOMETRY, type PgTable, type TableDump } from './format.js';
import type { PhysMemory } from '../memory/phys.js';
import { L1_TABLE_SIZE, L2_TABLE_SIZE, type PageTablePool } from '../memory/ptpool.js';
import {
  IOMMU_READ,
  IOMMU_WRITE,
  L1_SUPERSECTION,
  L1_SECTION_BIT,
  L2_SMALL_BIT,
  L2_TYPE_LARGE,
  pgsizeIndex,
  PGSIZES,
  SECTION_ATTR_MASK,
  SZ_16M,
  SZ_1M,
  SZ_4K,
  SZ_64K,
  encodeLeaf,
  encodeTable,
  largePerm,
  largeToSmallAttrs,
  permToProt,
  sectionPerm,
  sectionToLargeAttrs,
  sectionToSmallAttrs,
  smallPerm,
} from './desc.js';

export const WALK_OK = 0;
export const WALK_FAULT = 1;
/** The walk left RAM: the hardware reports a table-walk slave error (HTWSEEF). */
export const WALK_EXTERNAL = 2;

/** Reusable walk result: the translation path allocates nothing per walk. */
export class WalkResult {
  status = WALK_OK;
  /** Physical address of the walked iova. */
  paddr = 0;
  /** Leaf size in bytes and base addresses of the leaf. */
  size = 0;
  vaBase = 0;
  paBase = 0;
  perm = 0;
  /** Addresses of the L1 and L2 descriptors read (l2Addr -1 for a section). */
  l1Addr = 0;
  l2Addr = -1;
}

export function l1Base(ttbr0: number): number {
  return (ttbr0 & 0xffffc000) >>> 0;
}

/** One table walk as the hardware does it (TTBCR.N = 0: TTBR0 covers the whole 32-bit space). */
export function walk(mem: PhysMemory, ttbr0: number, iova: number, out: WalkResult): WalkResult {
  const l1a = (l1Base(ttbr0) + ((iova >>> 20) << 2)) >>> 0;
  out.l1Addr = l1a;
  out.l2Addr = -1;
  if (!mem.isRam(l1a)) {
    out.status = WALK_EXTERNAL;
    return out;
  }
  const d = mem.read32(l1a);
  if (d & L1_SECTION_BIT) {
    if (d & L1_SUPERSECTION) {
      out.size = SZ_16M;
      out.vaBase = (iova & 0xff000000) >>> 0;
      out.paBase = (d & 0xff000000) >>> 0;
      out.paddr = (out.paBase | (iova & 0x00ffffff)) >>> 0;
    } else {
      out.size = SZ_1M;
      out.vaBase = (iova & 0xfff00000) >>> 0;
      out.paBase = (d & 0xfff00000) >>> 0;
      out.paddr = (out.paBase | (iova & 0x000fffff)) >>> 0;
    }
    out.perm = sectionPerm(d);
    out.status = WALK_OK;
    return out;
  }
  if ((d & 3) === 0) {
    out.status = WALK_FAULT;
    return out;
  }
  const l2a = ((d & 0xfffffc00) + (((iova >>> 12) & 0xff) << 2)) >>> 0;
  out.l2Addr = l2a;
  if (!mem.isRam(l2a)) {
    out.status = WALK_EXTERNAL;
    return out;
  }
  const e = mem.read32(l2a);
  if (e & L2_SMALL_BIT) {
    out.size = SZ_4K;
    out.vaBase = (iova & 0xfffff000) >>> 0;
    out.paBase = (e & 0xfffff000) >>> 0;
    out.paddr = (out.paBase | (iova & 0xfff)) >>> 0;
    out.perm = smallPerm(e);
  } else if (e & 1) {
    out.size = SZ_64K;
    out.vaBase = (iova & 0xffff0000) >>> 0;
    out.paBase = (e & 0xffff0000) >>> 0;
    out.paddr = (out.paBase | (iova & 0xffff)) >>> 0;
    out.perm = largePerm(e);
  } else {
    out.status = WALK_FAULT;
    return out;
  }
  out.status = WALK_OK;
  return out;
}

/** Per page size (4K, 64K, 1M, 16M) counts of leaves, as the domain reports them. */
export type PageCounts = [number, number, number, number];

/** What an operation asks the caller to invalidate (io-pgtable's iommu_flush_ops + iotlb_gather). */
export interface FlushOps {
  /** A leaf range was removed or rewritten: invalidate TLB entries covering it. */
  addPage(iova: number, size: number): void;
  /** An intermediate table was freed or replaced over this range (walk caches). */
  flushWalk(iova: number, size: number): void;
}

export interface PgtableConfig {
  /** Allowed page sizes as a bitmap of sizes (the kernel's pgsize_bitmap). */
  pgsizeBitmap: number;
  partialUnmap: 'split' | 'refuse';
}

/** The kernel's iommu_pgsize: largest allowed size ≤ remaining, to which both addresses are aligned. */
export function pickPgsize(bitmap: number, addrMerge: number, remaining: number): number {
  for (let i = PGSIZES.length - 1; i >= 0; i--) {
    const sz = PGSIZES[i]!;
    if ((bitmap & sz) !== 0 && sz <= remaining && addrMerge % sz === 0) return sz;
  }
  return 0;
}

export function minPgsize(bitmap: number): number {
  for (const sz of PGSIZES) if (bitmap & sz) return sz;
  return SZ_4K;
}

function isMultiple(x: number, a: number): boolean {
  return x % a === 0;
}

/** The checks iommu_map makes, in its order: shape, alignment, range, prot. */
export function checkMapArgs(cfg: PgtableConfig, iova: number, paddr: number, size: number, prot: number): void {
  const min = minPgsize(cfg.pgsizeBitmap);
  if (!isMultiple(iova, min) || !isMultiple(paddr, min) || !isMultiple(size, min)) {
    throw new IommuError('UNALIGNED', `iova, paddr and size must be multiples of the smallest page size 0x${min.toString(16)}`, {
      iova,
      paddr,
      size,
      minPageSize: min,
    });
  }
  if (size <= 0 || iova + size > 2 ** 32 || paddr + size > 2 ** 32) {
    throw new IommuError('OUT_OF_RANGE', 'iova + size and paddr + size must lie within the 32-bit space, size > 0', {
      iova,
      paddr,
      size,
    });
  }
  if (!(prot & (IOMMU_READ | IOMMU_WRITE))) {
    throw new IommuError('BAD_REQUEST', 'prot must include read or write', { prot });
  }
}

export function checkUnmapArgs(cfg: PgtableConfig, iova: number, size: number): void {
  const min = minPgsize(cfg.pgsizeBitmap);
  if (!isMultiple(iova, min) || !isMultiple(size, min)) {
    throw new IommuError('UNALIGNED', `iova and size must be multiples of the smallest page size 0x${min.toString(16)}`, {
      iova,
      size,
      minPageSize: min,
    });
  }
  if (size <= 0 || iova + size > 2 ** 32) {
    throw new IommuError('OUT_OF_RANGE', 'iova + size must lie within the 32-bit space, size > 0', { iova, size });
  }
}

function alreadyMapped(iova: number): never {
  throw new IommuError('ALREADY_MAPPED', `iova 0x${iova.toString(16)} is already mapped`, { iova });
}

/** Levels of the short-descriptor format as io-pgtable-arm-v7s numbers them: 1 (4096 × 1 MiB), 2 (256 × 4 KiB). */
export type Level = 1 | 2;
/** The iova bit an entry of each level starts at (the kernel's ARM_V7S_LVL_SHIFT). */
const LVL_SHIFT = [0, 20, 12] as const;
const LVL_BITS = [0, 12, 8] as const;
export const lvlShift = (lvl: Level): number => LVL_SHIFT[lvl];
/** Bytes one entry of the level maps. */
export const lvlSize = (lvl: Level): number => 2 ** LVL_SHIFT[lvl];
export const lvlEntries = (lvl: Level): number => 1 << LVL_BITS[lvl];
/** Index of the entry of a level that maps iova. */
export const lvlIdx = (iova: number, lvl: Level): number => (iova >>> LVL_SHIFT[lvl]) & ((1 << LVL_BITS[lvl]) - 1);
/** Entries a contiguous leaf repeats over: a supersection (16 × 1 MiB) and a large page (16 × 4 KiB). */
const CONT_ENTRIES = 16;
/** A valid entry that points to a next-level table (only level 1 has them). */
const isTableEntry = (d: number, lvl: Level): boolean => lvl === 1 && (d & 3) === 1;
/** A valid leaf that is one of CONT_ENTRIES copies (supersection, large page). */
const isContiguousLeaf = (d: number, lvl: Level): boolean => (lvl === 1 ? (d & L1_SECTION_BIT) !== 0 && (d & L1_SUPERSECTION) !== 0 : (d & 3) === L2_TYPE_LARGE);

type LeafFn = (iova: number, paddr: number, size: number, prot: number) => boolean | void;

/**
 * One page table (an L1 and its L2s) in RAM. Holds nothing but its L1 address: everything else is read from
 * memory, so a client that writes descriptors itself sees them honoured.
 */
export class V7sTable implements PgTable {
  readonly l1: number;
  private readonly lw = new WalkResult();
  /** L1 entries whose L2 tables the current unmap cleared entries of (checked for emptiness at its end). */
  private readonly touched: number[] = [];

  /** A new table (its L1 from the pool), or the one already at `l1` (a restored snapshot). */
  constructor(
    readonly mem: PhysMemory,
    readonly pool: PageTablePool,
    l1?: number,
  ) {
    this.l1 = l1 ?? pool.allocL1();
  }

  readonly geometry = FULL_GEOMETRY;

  dumpTables(): TableDump {
    return { kind: 'levels', root: this.l1, ...this.dump() };
  }

  /** What TTBR0 points at. */
  get root(): number {
    return this.l1;
  }

  /** A leaf descriptor for this format (the OMAP format overrides it: no attribute bits). */
  protected leaf(size: number, paddr: number, prot: number): number {
    return encodeLeaf(size, paddr, prot);
  }

  /** The IOMMU prot a leaf's permission bits stand for. */
  protected protOf(perm: number): number {
    return permToProt(perm);
  }

  /** iova_to_phys by software walk (no TLB, no fault). */
  lookup(iova: number): { paddr: number; pageSize: number; prot: number } | null {
    const w = walk(this.mem, this.l1, iova, this.lw);
    return w.status === WALK_OK ? { paddr: w.paddr, pageSize: w.size, prot: permToProt(w.perm) } : null;
  }

  /**
   * Maps [iova, iova+size) → paddr with the kernel's page-size choice. Not atomic by itself: the caller runs it
   * inside mem.atomically() so any refusal rolls every write back.
   */
  map(cfg: PgtableConfig, iova: number, paddr: number, size: number, prot: number, added: PageCounts): void {
    checkMapArgs(cfg, iova, paddr, size, prot);
    let done = 0;
    while (done < size) {
      const a = iova + done;
      const p = paddr + done;
      const sz = pickPgsize(cfg.pgsizeBitmap, a | p, size - done);
      this.mapOne(a, p, sz, prot);
      added[pgsizeIndex(sz)]!++;
      done += sz;
    }
  }

  private mapOne(iova: number, paddr: number, size: number, prot: number): void {
    const mem = this.mem;
    const l1a = this.l1 + ((iova >>> 20) << 2);
    if (size >= SZ_1M) {
      const n = size === SZ_16M ? 16 : 1;
      for (let k = 0; k < n; k++) if (mem.read32(l1a + 4 * k) & 3) alreadyMapped(iova + k * SZ_1M);
      const d = this.leaf(size, paddr, prot);
      for (let k = 0; k < n; k++) mem.write32(l1a + 4 * k, d);
      return;
    }
    let d1 = mem.read32(l1a);
    if (d1 & L1_SECTION_BIT) alreadyMapped(iova);
    if ((d1 & 3) === 0) {
      d1 = encodeTable(this.pool.allocL2());
      mem.write32(l1a, d1);
    }
    const l2a = (d1 & 0xfffffc00) + (((iova >>> 12) & 0xff) << 2);
    const n = size === SZ_64K ? 16 : 1;
    for (let k = 0; k < n; k++) if (mem.read32(l2a + 4 * k) & 3) alreadyMapped(iova + k * SZ_4K);
    const d = this.leaf(size, paddr, prot);
    for (let k = 0; k < n; k++) mem.write32(l2a + 4 * k, d);
  }

  /**
   * Removes every mapped page in [iova, iova+size), skipping holes; large pages cut by the range are split as
   * HARDWARE.md pins (or refused). Returns bytes unmapped; `delta` receives the change of leaf counts.
   */
  unmap(cfg: PgtableConfig, iova: number, size: number, delta: PageCounts, flush: FlushOps): number {
    checkUnmapArgs(cfg, iova, size);
    let done = 0;
    let bytes = 0;
    this.touched.length = 0;
    while (done < size) {
      const a = iova + done;
      const sz = pickPgsize(cfg.pgsizeBitmap | SZ_4K, a, size - done);
      bytes += this.unmapChunk(cfg, a, sz, delta, flush);
      done += sz;
    }
    // L2 tables emptied by this unmap are freed once, at the end, rather than scanned after every chunk.
    for (const l1a of this.touched) {
      const d = this.mem.read32(l1a);
      if ((d & 3) !== 1) continue;
      const l2 = (d & 0xfffffc00) >>> 0;
      // Cleared entries are written as 0, so an empty table is all zero words.
      if (this.mem.allZero(l2, L2_TABLE_SIZE)) {
        this.mem.write32(l1a, 0);
        if (this.pool.contains(l2)) this.pool.free(l2, L2_TABLE_SIZE);
        flush.flushWalk(((l1a - this.l1) >>> 2) * SZ_1M, SZ_1M);
      }
    }
    if (bytes === 0) {
      throw new IommuError('NOT_MAPPED', `nothing is mapped in [0x${iova.toString(16)}, 0x${(iova + size).toString(16)})`, {
        iova,
        size,
      });
    }
    return bytes;
  }

  private unmapChunk(cfg: PgtableConfig, a: number, s: number, delta: PageCounts, flush: FlushOps): number {
    const mem = this.mem;
    let bytes = 0;
    if (s >= SZ_1M) {
      const end = a + s;
      for (let va = a; va < end; va += SZ_1M) {
        const l1a = this.l1 + ((va >>> 20) << 2);
        let d = mem.read32(l1a);
        if ((d & 3) === 0) continue;
        if (d & L1_SECTION_BIT && d & L1_SUPERSECTION) {
          if (s === SZ_16M) {
            for (let k = 0; k < 16; k++) mem.write32(l1a + 4 * k, 0);
            delta[3]--;
            flush.addPage(va, SZ_16M);
            bytes += SZ_16M;
            break;
          }
          this.splitSupersection(cfg, va, delta, flush);
          d = mem.read32(l1a);
        }
        if (d & L1_SECTION_BIT) {
          mem.write32(l1a, 0);
          delta[2]--;
          flush.addPage(va, SZ_1M);
          bytes += SZ_1M;
        } else {
          bytes += this.clearL2(l1a, d, 0, 256, delta);
          flush.addPage(va, SZ_1M);
        }
      }
      return bytes;
    }
    const l1a = this.l1 + ((a >>> 20) << 2);
    let d = mem.read32(l1a);
    if ((d & 3) === 0) return 0;
    if (d & L1_SECTION_BIT) {
      if (d & L1_SUPERSECTION) {
        this.splitSupersection(cfg, a, delta, flush);
        d = mem.read32(l1a);
      }
      d = this.splitSection(cfg, l1a, d, s, delta, flush, a);
    }
    const j = (a >>> 12) & 0xff;
    const l2a = (d & 0xfffffc00) + (j << 2);
    if (s === SZ_4K) {
      const e = mem.read32(l2a);
      if ((e & 3) === L2_TYPE_LARGE) this.splitLarge(cfg, l2a - (j & 15) * 4, e, delta, flush, a);
    }
    bytes = this.clearL2(l1a, d, j, s === SZ_64K ? 16 : 1, delta);
    if (bytes) flush.addPage(a, s);
    return bytes;
  }

  /** Clears L2 entries [j, j+n) of the table L1 entry d points to; frees the table when it becomes empty. */
  private clearL2(l1a: number, d: number, j: number, n: number, delta: PageCounts): number {
    const mem = this.mem;
    const l2 = (d & 0xfffffc00) >>> 0;
    let bytes = 0;
    for (let k = j; k < j + n; k++) {
      const e = mem.read32(l2 + 4 * k);
      if (e & L2_SMALL_BIT) {
        delta[0]--;
        bytes += SZ_4K;
      } else if (e & 1) {
        // A large page occupies 16 entries; count it once, at its first entry.
        if ((k & 15) === 0) delta[1]--;
        bytes += SZ_4K;
      } else continue;
      mem.write32(l2 + 4 * k, 0);
    }
    if (bytes && this.touched[this.touched.length - 1] !== l1a) this.touched.push(l1a);
    return bytes;
  }

  private refuseSplit(cfg: PgtableConfig, iova: number, size: number): void {
    if (cfg.partialUnmap === 'refuse') {
      throw new IommuError('PARTIAL_UNMAP', `the range cuts a ${size >>> 10} KiB page at 0x${iova.toString(16)}`, {
        iova,
        pageSize: size,
      });
    }
  }

  /** 16M supersection → 16 sections, each keeping its slice of the physical range. */
  private splitSupersection(cfg: PgtableConfig, va: number, delta: PageCounts, flush: FlushOps): void {
    const base = (va & 0xff000000) >>> 0;
    this.refuseSplit(cfg, base, SZ_16M);
    const l1a = this.l1 + ((base >>> 20) << 2);
    const d = this.mem.read32(l1a);
    const pa = (d & 0xff000000) >>> 0;
    const attrs = d & SECTION_ATTR_MASK;
    for (let k = 0; k < 16; k++) this.mem.write32(l1a + 4 * k, (pa + k * SZ_1M) | attrs);
    delta[3]--;
    delta[2] += 16;
    flush.flushWalk(base, SZ_16M);
  }

  /** 1M section cut by a chunk of size s < 1M → an L2 table of pages of that size covering the section. */
  private splitSection(cfg: PgtableConfig, l1a: number, d: number, s: number, delta: PageCounts, flush: FlushOps, va: number): number {
    const base = (va & 0xfff00000) >>> 0;
    this.refuseSplit(cfg, base, SZ_1M);
    const l2 = this.pool.allocL2();
    const pa = (d & 0xfff00000) >>> 0;
    if (s === SZ_64K) {
      const e = sectionToLargeAttrs(d) | 1;
      for (let k = 0; k < 256; k++) this.mem.write32(l2 + 4 * k, (pa + (k >>> 4) * SZ_64K) | e);
      delta[1] += 16;
    } else {
      const e = sectionToSmallAttrs(d) | L2_SMALL_BIT;
      for (let k = 0; k < 256; k++) this.mem.write32(l2 + 4 * k, (pa + k * SZ_4K) | e);
      delta[0] += 256;
    }
    delta[2]--;
    const t = encodeTable(l2);
    this.mem.write32(l1a, t);
    flush.flushWalk(base, SZ_1M);
    return t;
  }

  /** 64K large page → 16 small pages. `first` is the address of its first L2 entry. */
  private splitLarge(cfg: PgtableConfig, first: number, e: number, delta: PageCounts, flush: FlushOps, va: number): void {
    const base = (va & 0xffff0000) >>> 0;
    this.refuseSplit(cfg, base, SZ_64K);
    const pa = (e & 0xffff0000) >>> 0;
    const attrs = largeToSmallAttrs(e) | L2_SMALL_BIT;
    for (let k = 0; k < 16; k++) this.mem.write32(first + 4 * k, (pa + k * SZ_4K) | attrs);
    delta[1]--;
    delta[0] += 16;
    flush.flushWalk(base, SZ_64K);
  }

  /** Calls fn for every leaf in iova order, from `from` (inclusive) up to `to` (exclusive). */
  forEachLeaf(from: number, to: number, fn: LeafFn): void {
    this.visit(1, this.l1, 0, from, to, fn);
  }

  /**
   * One level of forEachLeaf: the entries of the table at `table` (covering iova `base` onwards) from the one that
   * holds `from`; a table entry recurses into the next level. A contiguous leaf (16 entries: a supersection at
   * level 1, a large page at level 2) is reported once, from its first entry, even when `from` falls inside it.
   * Returns false once fn asked to stop or `to` is reached.
   */
  private visit(lvl: Level, table: number, base: number, from: number, to: number, fn: LeafFn): boolean {
    const size = lvlSize(lvl);
    for (let i = from > base ? Math.floor((from - base) / size) : 0; i < lvlEntries(lvl); i++) {
      const va = base + i * size;
      if (va >= to) return false;
      const d = this.mem.read32(table + 4 * i);
      if ((d & 3) === 0) continue;
      if (isTableEntry(d, lvl)) {
        if (!this.visit(2, (d & 0xfffffc00) >>> 0, va, from, to, fn)) return false;
        continue;
      }
      const cont = isContiguousLeaf(d, lvl);
      const first = cont ? i & ~(CONT_ENTRIES - 1) : i;
      if (cont) i = first + CONT_ENTRIES - 1;
      const leafSize = cont ? CONT_ENTRIES * size : size;
      const perm = lvl === 1 ? sectionPerm(d) : cont ? largePerm(d) : smallPerm(d);
      if (fn(base + first * size, (d & ~(leafSize - 1)) >>> 0, leafSize, this.protOf(perm)) === false) return false;
    }
    return true;
  }

  /** The raw tables: valid L1 entries and, for each L2 table, its valid entries. */
  dump(): { l1: Array<{ index: number; desc: number }>; l2: Array<{ base: number; entries: Array<{ index: number; desc: number }> }> } {
    const l1: Array<{ index: number; desc: number }> = [];
    const l2: Array<{ base: number; entries: Array<{ index: number; desc: number }> }> = [];
    for (let i = 0; i < 4096; i++) {
      const d = this.mem.read32(this.l1 + 4 * i);
      if ((d & 3) === 0) continue;
      l1.push({ index: i, desc: d });
      if ((d & 3) === 1) {
        const base = (d & 0xfffffc00) >>> 0;
        const entries: Array<{ index: number; desc: number }> = [];
        for (let j = 0; j < 256; j++) {
          const e = this.mem.read32(base + 4 * j);
          if (e & 3) entries.push({ index: j, desc: e });
        }
        l2.push({ base, entries });
      }
    }
    return { l1, l2 };
  }

  /** Frees every table of this page table (domain free). Only L2 tables inside the pool are ours to free. */
  free(): void {
    for (let i = 0; i < 4096; i++) {
      const d = this.mem.read32(this.l1 + 4 * i);
      if ((d & 3) === 1) {
        const base = (d & 0xfffffc00) >>> 0;
        if (this.pool.contains(base)) {
          this.mem.zero(base, L2_TABLE_SIZE);
          this.pool.free(base, L2_TABLE_SIZE);
        }
      }
    }
    this.mem.zero(this.l1, L1_TABLE_SIZE);
    this.pool.free(this.l1, L1_TABLE_SIZE);
  }
}

