/**
 * Page-table operations over tables that live in emulated RAM (the io-pgtable-arm-v7s role): walk, map, unmap
 * with the pinned split rule, iova_to_phys, dumps. Tables are data in memory, not objects. This module never
 * touches a TLB: it reports what must be invalidated through the caller's gather.
 */
import { fail } from '../errors.js';
import { FULL_GEOMETRY, type PgTable, type TableDump } from './format.js';
import { OUTSIDE_RAM, type PhysMemory } from '../memory/phys.js';
import type { PageTablePool } from '../memory/ptpool.js';
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

/**
 * One table walk as the hardware does it (TTBCR.N = 0: TTBR0 covers the whole 32-bit space). Descriptor addresses
 * and descriptors stay signed words (ptep and iopteDeref's bits without their >>> 0; tableWord): small integers to
 * V8, which passes them through a call as they are, where an unsigned word of 2^31 or more (tables and RAM above
 * 2 GiB) becomes a heap number in each call it crosses. A table is aligned to its size, so | is ptep's +.
 */
export function walk(mem: PhysMemory, ttbr0: number, iova: number, out: WalkResult): WalkResult {
  // lvlIdx(iova, 1) << 2 and lvlIdx(iova, 2) << 2, written out: a walk inlined into a large caller keeps the fewest calls.
  const l1a = (ttbr0 & 0xffffc000) | ((iova >>> 18) & 0x3ffc);
  out.l1Addr = l1a >>> 0;
  out.l2Addr = -1;
  const d = mem.tableWord(l1a);
  if (d === OUTSIDE_RAM) {
    out.status = WALK_EXTERNAL;
    return out;
  }
  // Bit 1 makes a section whatever bit 0 (PXN) says, so this tests more than pteIsTable.
  if (d & L1_SECTION_BIT) return walkLeaf(out, iova, d, d & L1_SUPERSECTION ? SZ_16M : SZ_1M, sectionPerm(d));
  if (!pteIsTable(d, 1)) {
    out.status = WALK_FAULT;
    return out;
  }
  const l2a = (d & 0xfffffc00) | ((iova >>> 10) & 0x3fc);
  out.l2Addr = l2a >>> 0;
  const e = mem.tableWord(l2a);
  if (e === OUTSIDE_RAM) {
    out.status = WALK_EXTERNAL;
    return out;
  }
  if (e & L2_SMALL_BIT) return walkLeaf(out, iova, e, SZ_4K, smallPerm(e));
  if (e & L2_TYPE_LARGE) return walkLeaf(out, iova, e, SZ_64K, largePerm(e));
  out.status = WALK_FAULT;
  return out;
}

/** Fills a walk's result from the leaf `pte` of `size` bytes that maps iova (v7s and OMAP walks alike). */
export function walkLeaf(out: WalkResult, iova: number, pte: number, size: number, perm: number): WalkResult {
  out.size = size;
  out.vaBase = (iova & -size) >>> 0;
  out.paBase = (pte & -size) >>> 0;
  out.paddr = (out.paBase | (iova & (size - 1))) >>> 0;
  out.perm = perm;
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
    if ((bitmap & sz) !== 0 && sz <= remaining && isMultiple(addrMerge, sz)) return sz;
  }
  return 0;
}

/**
 * iommu_pgsize with its count: the page size pickPgsize chooses at iova/paddr and how many pages of it in a row
 * the choice repeats (up to where the next larger allowed size could start): one run of map_pages/unmap_pages.
 */
export function iommuPgsize(bitmap: number, iova: number, paddr: number, size: number, out: { pgsize: number; count: number }): void {
  const pgsize = pickPgsize(bitmap, iova | paddr, size);
  let span = size;
  let next = 0;
  for (const sz of PGSIZES) {
    if (sz > pgsize && (bitmap & sz) !== 0) {
      next = sz;
      break;
    }
  }
  // A larger page can only come where iova and paddr are equally offset within it.
  if (next !== 0 && ((iova ^ paddr) & (next - 1)) === 0) {
    const offset = next - (iova & (next - 1));
    if (offset + next <= size) span = offset;
  }
  out.pgsize = pgsize;
  out.count = Math.floor(span / pgsize);
}

export function minPgsize(bitmap: number): number {
  for (const sz of PGSIZES) if (bitmap & sz) return sz;
  return SZ_4K;
}

/**
 * x % a === 0 for a page size a (a power of two): a mask for a 32-bit whole x, signed (iova | paddr) or not (a
 * float modulo costs more).
 */
function isMultiple(x: number, a: number): boolean {
  return ((x | 0) === x || x >>> 0 === x ? x & (a - 1) : x % a) === 0;
}

/** The checks iommu_map makes, in its order: shape, alignment, range, prot. */
export function checkMapArgs(cfg: PgtableConfig, iova: number, paddr: number, size: number, prot: number): void {
  const min = minPgsize(cfg.pgsizeBitmap);
  if (!isMultiple(iova, min) || !isMultiple(paddr, min) || !isMultiple(size, min)) {
    fail('pageUnaligned', { iova, paddr, size, minPageSize: min });
  }
  if (size <= 0 || iova + size > 2 ** 32 || paddr + size > 2 ** 32) {
    fail('mapRange', { iova, paddr, size });
  }
  if (!(prot & (IOMMU_READ | IOMMU_WRITE))) {
    fail('protNoAccess', { prot });
  }
}

export function checkUnmapArgs(cfg: PgtableConfig, iova: number, size: number): void {
  const min = minPgsize(cfg.pgsizeBitmap);
  if (!isMultiple(iova, min) || !isMultiple(size, min)) {
    fail('pageUnaligned', { iova, size, minPageSize: min });
  }
  if (size <= 0 || iova + size > 2 ** 32) {
    fail('iovaRange', { iova, size, sizeMin: true });
  }
}

function alreadyMapped(iova: number): never {
  fail('alreadyMapped', { iova });
}

/**
 * Levels of the short-descriptor format, as io-pgtable-arm-v7s numbers them: 1 (4096 entries of 1 MiB), 2 (256
 * entries of 4 KiB). The helpers are the kernel's ARM_V7S_* macros, arithmetic on the level so a call with a
 * constant level folds to a constant.
 */
export type Level = 1 | 2;
export const LEVELS: readonly Level[] = [1, 2];
/** ARM_V7S_LVL_BITS: iova bits one level resolves. */
export const lvlBits = (lvl: Level): number => 16 - 4 * lvl;
/** ARM_V7S_LVL_SHIFT: the iova bit an entry of the level starts at. */
export const lvlShift = (lvl: Level): number => 32 - (4 + 8 * lvl);
/** ARM_V7S_PTES_PER_LVL. */
export const ptesPerLvl = (lvl: Level): number => 1 << lvlBits(lvl);
/** ARM_V7S_BLOCK_SIZE: bytes one entry of the level maps. */
export const blockSize = (lvl: Level): number => 1 << lvlShift(lvl);
/** ARM_V7S_TABLE_SIZE: bytes of a table of the level (4-byte entries). */
export const tableSize = (lvl: Level): number => ptesPerLvl(lvl) << 2;
/** ARM_V7S_LVL_IDX: index of the entry of a level that maps iova. */
export const lvlIdx = (iova: number, lvl: Level): number => (iova >>> lvlShift(lvl)) & (ptesPerLvl(lvl) - 1);
/** Address of the entry for iova in the level's table at `table`. */
export const ptep = (table: number, iova: number, lvl: Level): number => (table + (lvlIdx(iova, lvl) << 2)) >>> 0;
/** ARM_V7S_CONT_PAGES: entries a contiguous leaf repeats over (a supersection: 16 × 1 MiB, a large page: 16 × 4 KiB). */
export const CONT_PTES = 16;
/** ARM_V7S_PTE_IS_VALID. */
export const pteIsValid = (pte: number): boolean => (pte & 3) !== 0;
/** ARM_V7S_PTE_IS_TABLE: a valid entry that points to a next-level table (only level 1 has them). */
export const pteIsTable = (pte: number, lvl: Level): boolean => lvl === 1 && (pte & 3) === 1;
/** arm_v7s_pte_is_cont, for a valid leaf: a supersection at level 1, a large page at level 2. */
export const pteIsCont = (pte: number, lvl: Level): boolean => (lvl === 1 ? (pte & L1_SUPERSECTION) !== 0 : (pte & L2_SMALL_BIT) === 0);
/** iopte_deref: the next-level table a table entry points to. */
export const iopteDeref = (pte: number): number => (pte & 0xfffffc00) >>> 0;
/** Bytes a valid leaf maps. */
export const leafSize = (pte: number, lvl: Level): number => (pteIsCont(pte, lvl) ? CONT_PTES : 1) * blockSize(lvl);
/** Index in PGSIZES (and page counts) of a leaf of the level: 4K, 64K at level 2; 1M, 16M at level 1. */
const leafIndex = (lvl: Level, cont: boolean): number => 4 - 2 * lvl + (cont ? 1 : 0);
/** Permission bits of a valid leaf in the common layout. */
export const leafPerm = (pte: number, lvl: Level): number => (lvl === 1 ? sectionPerm(pte) : pteIsCont(pte, lvl) ? largePerm(pte) : smallPerm(pte));
/** A contiguous leaf's attribute bits as one entry of the same level (the 16M → 16 × 1M and 64K → 16 × 4K split). */
const contToSingle = (pte: number, lvl: Level): number => (lvl === 1 ? pte & SECTION_ATTR_MASK : largeToSmallAttrs(pte) | L2_SMALL_BIT);
/** A section's attribute bits as a level-2 leaf of `size` (a section split into a table). */
const blockToNext = (pte: number, size: number): number => (size === SZ_64K ? sectionToLargeAttrs(pte) | L2_TYPE_LARGE : sectionToSmallAttrs(pte) | L2_SMALL_BIT);

/** What the unmap of an entry that clears a whole next-level table tells the gather: nothing (its caller invalidates the entry). */
const NO_FLUSH: FlushOps = { addPage() {}, flushWalk() {} };

/** The entries of one run in one table (at most a level-1 table's): read, checked and written as a block. */
const RUN_PTES = new Uint32Array(4096);
/** The entries of an unmap's run in one level-2 table (its own: a split inside the run writes with RUN_PTES). */
const UNMAP_PTES = new Uint32Array(256);

type LeafFn = (iova: number, paddr: number, size: number, prot: number) => boolean | void;

/**
 * One page table (an L1 and its L2s) in RAM. Holds nothing but its L1 address: everything else is read from
 * memory, so a client that writes descriptors itself sees them honoured. Map, unmap and the leaf visit are each one
 * function over levels, as in io-pgtable-arm-v7s; map and unmap hand a level a run of pages (a page size and a
 * count) so the work inside one table is one loop, as the kernel's map_pages/unmap_pages do.
 */
export class V7sTable implements PgTable {
  readonly l1: number;
  private readonly lw = new WalkResult();
  /** Level-1 entries whose tables the current unmap cleared entries of: freed at its end when empty. */
  private readonly touched: number[] = [];
  private nTouched = 0;
  private readonly run = { pgsize: 0, count: 0 };

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

  /** One descriptor written by the page-table code outside a counted run (level-1 entries, mostly). */
  private set(addr: number, pte: number): void {
    this.pool.claim(addr);
    this.mem.write32(addr, pte);
    this.pool.wrote(addr);
  }

  /**
   * Maps [iova, iova+size) → paddr with the kernel's page-size choice. Not atomic by itself: the caller runs it
   * inside mem.atomically() so any refusal rolls every write back.
   */
  map(cfg: PgtableConfig, iova: number, paddr: number, size: number, prot: number, added: PageCounts): void {
    checkMapArgs(cfg, iova, paddr, size, prot);
    const run = this.run;
    for (let done = 0; done < size; ) {
      iommuPgsize(cfg.pgsizeBitmap, iova + done, paddr + done, size - done, run);
      const { pgsize, count } = run;
      this.mapLvl(1, this.l1, iova + done, paddr + done, pgsize, count, prot);
      added[pgsizeIndex(pgsize)]! += count;
      done += pgsize * count;
    }
  }

  /**
   * __arm_v7s_map for a run: `count` pages of `pgsize` from iova, all inside the level's table at `table`. Pages
   * of this level's entries or larger are written here (a contiguous page as CONT_PTES copies); smaller ones go
   * to the next level, one call per table with the pages that fall in it.
   */
  private mapLvl(lvl: Level, table: number, iova: number, paddr: number, pgsize: number, count: number, prot: number): void {
    const mem = this.mem;
    const block = blockSize(lvl);
    if (pgsize < block) {
      for (let a = iova, p = paddr, left = count; left > 0; ) {
        const n = Math.min(left, (block - (a & (block - 1))) / pgsize);
        const at = ptep(table, a, lvl);
        let pte = mem.read32(at);
        if (!pteIsValid(pte)) {
          pte = encodeTable(this.pool.allocL2());
          this.set(at, pte);
        } else if (!pteIsTable(pte, lvl)) alreadyMapped(a);
        this.mapLvl((lvl + 1) as Level, iopteDeref(pte), a, p, pgsize, n, prot);
        a += n * pgsize;
        p += n * pgsize;
        left -= n;
      }
      return;
    }
    const entries = (pgsize / block) * count;
    const first = ptep(table, iova, lvl);
    const live = lvl === 1 ? (this.pool.claim(table), 0) : this.pool.liveCount(table);
    this.writeLeaves(first, iova, paddr, pgsize, block, entries, prot);
    if (lvl === 1) this.pool.wrote(table);
    else if (live >= 0) this.pool.setLive(table, live + entries);
  }

  /**
   * The leaves of one run in one table: `entries` entries of `block` bytes from `first`, each page of `pgsize`
   * repeated over pgsize / block of them (CONT_PTES for a contiguous page). Every entry is checked before any is
   * written, so the first one in use is the one reported. One function for every level and size, so the code
   * the JIT made for 4K pages serves 16M ones unchanged.
   */
  private writeLeaves(first: number, iova: number, paddr: number, pgsize: number, block: number, entries: number, prot: number): void {
    const mem = this.mem;
    const buf = RUN_PTES;
    mem.readWords(first, entries, buf, 0);
    let old = 0;
    for (let k = 0; k < entries; k++) {
      if (buf[k]! & 3) alreadyMapped(iova + k * block);
      old |= buf[k]!;
    }
    const attrs = this.leaf(pgsize, 0, prot);
    const per = pgsize / block;
    for (let k = 0; k < entries; k++) buf[k] = (paddr + (k - (k % per)) * block) | attrs;
    // Unused entries are zero but for what a client wrote: then the undo log needs one action, not each old word.
    mem.writeWords(first, buf, 0, entries, old === 0);
  }

  /**
   * Removes every mapped page in [iova, iova+size), skipping holes; large pages cut by the range are split as
   * HARDWARE.md pins (or refused). Returns bytes unmapped; `delta` receives the change of leaf counts.
   */
  unmap(cfg: PgtableConfig, iova: number, size: number, delta: PageCounts, flush: FlushOps): number {
    checkUnmapArgs(cfg, iova, size);
    const run = this.run;
    let bytes = 0;
    this.nTouched = 0;
    for (let done = 0; done < size; ) {
      const a = iova + done;
      // Chunks by the map's page-size choice (iova alone: unmap has no paddr), every size the format has allowed.
      iommuPgsize(cfg.pgsizeBitmap | SZ_4K, a, a, size - done, run);
      const { pgsize, count } = run;
      bytes += this.unmapLvl(cfg, 1, this.l1, a, pgsize, count, delta, flush);
      done += pgsize * count;
    }
    // Tables emptied by this unmap are freed at its end, so a split later in the same unmap does not take their
    // place in the pool (table addresses stay those of the chunk-by-chunk rule).
    for (let t = 0; t < this.nTouched; t++) {
      const at = this.touched[t]!;
      const pte = this.mem.read32(at);
      if (!pteIsTable(pte, 1)) continue;
      const l2 = iopteDeref(pte);
      const live = this.pool.liveCount(l2);
      if (live === 0 || (live < 0 && this.mem.allZero(l2, tableSize(2)))) {
        this.set(at, 0);
        if (live === 0) this.pool.free(l2, tableSize(2));
        flush.flushWalk(((at - this.l1) >>> 2) * blockSize(1), blockSize(1));
      }
    }
    if (bytes === 0) fail('nothingMapped', { iova, size });
    return bytes;
  }

  /**
   * __arm_v7s_unmap for a run of `count` chunks of `pgsize` from iova inside the level's table at `table`. A
   * chunk smaller than this level's entries goes down a level, after the leaf it cuts is split (a supersection
   * to sections, then the section to a table of pages of the chunk's size). A chunk of whole entries clears them:
   * a table entry with its whole table, a contiguous leaf the chunk cuts split first. Returns bytes unmapped.
   */
  private unmapLvl(cfg: PgtableConfig, lvl: Level, table: number, iova: number, pgsize: number, count: number, delta: PageCounts, flush: FlushOps): number {
    const mem = this.mem;
    const block = blockSize(lvl);
    let bytes = 0;
    if (pgsize < block) {
      for (let a = iova, left = count; left > 0; ) {
        const n = Math.min(left, (block - (a & (block - 1))) / pgsize);
        const at = ptep(table, a, lvl);
        let pte = mem.read32(at);
        if (pteIsValid(pte)) {
          if (!pteIsTable(pte, lvl)) {
            if (pteIsCont(pte, lvl)) {
              this.pool.claim(table);
              pte = this.splitCont(cfg, lvl, table, a, delta, flush);
              this.pool.wrote(table);
            }
            pte = this.splitBlock(cfg, lvl, at, pte, pgsize, a, delta, flush);
          }
          const b = this.unmapLvl(cfg, (lvl + 1) as Level, iopteDeref(pte), a, pgsize, n, delta, flush);
          if (b) {
            bytes += b;
            this.touch(at);
          }
        }
        a += n * pgsize;
        left -= n;
      }
      return bytes;
    }
    // TLB invalidation goes by chunk, but never wider than a level-1 entry: a 16M chunk over sections
    // invalidates the sections it removed.
    const unit = Math.min(pgsize, blockSize(1));
    const unitPtes = unit / block;
    const entries = (pgsize / block) * count;
    const i0 = lvlIdx(iova, lvl);
    let live = lvl === 1 ? (this.pool.claim(table), -1) : this.pool.liveCount(table);
    // A run over every entry of a pool table leaves its words: the table is freed whole at the end of the unmap,
    // as __arm_v7s_free_table frees one without clearing it (nothing walks it once its entry is gone).
    const whole = live >= 0 && entries === ptesPerLvl(lvl);
    // A level-2 run (leaves only) is read as one block and its cleared entries written back as one (one undo
    // entry per word still, but no read, write and version bump per word).
    const asBlock = lvl === 2 && !whole;
    const ptes = UNMAP_PTES;
    const first = table + (i0 << 2);
    let dirtyFrom = entries;
    let dirtyTo = 0;
    if (asBlock) mem.readWords(first, entries, ptes, 0);
    let fromK = -1;
    let toK = -1;
    for (let k = 0; k < entries; k++) {
      const at = table + ((i0 + k) << 2);
      let pte = asBlock ? ptes[k]! : mem.read32(at);
      if (!pteIsValid(pte)) continue;
      if (pteIsTable(pte, lvl)) {
        // The chunk covers the entry: the whole next-level table goes (freed at the end of the unmap).
        const va = iova + k * block;
        this.pool.wrote(table);
        bytes += this.unmapLvl(cfg, (lvl + 1) as Level, iopteDeref(pte), va, block, 1, delta, NO_FLUSH);
        this.pool.claim(table);
        this.touch(at);
      } else {
        const cont = pteIsCont(pte, lvl);
        if (cont && pgsize < CONT_PTES * block) {
          if (asBlock) {
            // The split writes entries of this table in place: what the block cleared so far goes first, and
            // the block is read again after it.
            if (dirtyTo > dirtyFrom) mem.writeWords(first + (dirtyFrom << 2), ptes, dirtyFrom, dirtyTo - dirtyFrom);
            dirtyFrom = entries;
            dirtyTo = 0;
          }
          pte = this.splitCont(cfg, lvl, table, iova + k * block, delta, flush);
          if (asBlock) mem.readWords(first, entries, ptes, 0);
          delta[leafIndex(lvl, false)]--;
        } else if (cont) {
          // A contiguous leaf is one page: counted once, at its first entry.
          if (((i0 + k) & (CONT_PTES - 1)) === 0) delta[leafIndex(lvl, true)]--;
        } else delta[leafIndex(lvl, false)]--;
        if (asBlock) {
          ptes[k] = 0;
          if (k < dirtyFrom) dirtyFrom = k;
          dirtyTo = k + 1;
        } else if (!whole) mem.write32(at, 0);
        if (live > 0) live--;
        bytes += block;
      }
      // Extend the pending invalidation to this entry's unit, or send it and start another.
      const u0 = k - (k % unitPtes);
      if (u0 >= toK) {
        if (u0 > toK && fromK >= 0) flush.addPage(iova + fromK * block, (toK - fromK) * block);
        if (u0 > toK || fromK < 0) fromK = u0;
        toK = u0 + unitPtes;
      }
    }
    if (fromK >= 0) flush.addPage(iova + fromK * block, (toK - fromK) * block);
    if (dirtyTo > dirtyFrom) mem.writeWords(first + (dirtyFrom << 2), ptes, dirtyFrom, dirtyTo - dirtyFrom);
    if (lvl === 1) this.pool.wrote(table);
    else if (whole) this.pool.emptied(table);
    else if (live >= 0) this.pool.setLive(table, live);
    return bytes;
  }

  /** Notes a level-1 entry whose table the unmap cleared entries of (the array keeps its room between unmaps). */
  private touch(at: number): void {
    if (this.nTouched > 0 && this.touched[this.nTouched - 1] === at) return;
    this.touched[this.nTouched++] = at;
  }

  private refuseSplit(cfg: PgtableConfig, iova: number, size: number): void {
    if (cfg.partialUnmap === 'refuse') fail('partialUnmap', { iova, pageSize: size });
  }

  /**
   * arm_v7s_split_cont: the contiguous leaf holding iova (a 16M supersection, a 64K large page) becomes
   * CONT_PTES leaves of the level, each keeping its slice of the physical range. Returns the entry at iova.
   */
  private splitCont(cfg: PgtableConfig, lvl: Level, table: number, iova: number, delta: PageCounts, flush: FlushOps): number {
    const block = blockSize(lvl);
    const size = CONT_PTES * block;
    const base = (iova & -size) >>> 0;
    this.refuseSplit(cfg, base, size);
    const first = ptep(table, base, lvl);
    const pte = this.mem.read32(first);
    const pa = (pte & -size) >>> 0;
    const attrs = contToSingle(pte, lvl);
    for (let k = 0; k < CONT_PTES; k++) this.mem.write32(first + 4 * k, ((pa + k * block) | attrs) >>> 0);
    delta[leafIndex(lvl, true)]--;
    delta[leafIndex(lvl, false)] += CONT_PTES;
    flush.flushWalk(base, size);
    return this.mem.read32(ptep(table, iova, lvl));
  }

  /**
   * arm_v7s_split_blk_unmap's table: the block entry at `at` cut by a chunk of `pgsize` becomes a next-level
   * table of pages of the chunk's size (64K large pages for a 64K chunk, else 4K) covering the block. Returns the
   * new table entry.
   */
  private splitBlock(cfg: PgtableConfig, lvl: Level, at: number, pte: number, pgsize: number, iova: number, delta: PageCounts, flush: FlushOps): number {
    const block = blockSize(lvl);
    const base = (iova & -block) >>> 0;
    this.refuseSplit(cfg, base, block);
    const next = (lvl + 1) as Level;
    const table = this.pool.allocL2();
    const size = pgsize === SZ_64K ? SZ_64K : blockSize(next);
    const pa = (pte & -block) >>> 0;
    const attrs = blockToNext(pte, size);
    const ptes = ptesPerLvl(next);
    const live = this.pool.liveCount(table);
    const step = size / blockSize(next);
    for (let k = 0; k < ptes; k++) this.mem.write32(table + 4 * k, ((pa + (k - (k % step)) * blockSize(next)) | attrs) >>> 0);
    this.pool.setLive(table, live + ptes);
    delta[leafIndex(lvl, false)]--;
    delta[leafIndex(next, size > blockSize(next))] += ptes / step;
    const t = encodeTable(table);
    this.set(at, t);
    flush.flushWalk(base, block);
    return t;
  }

  /** Calls fn for every leaf in iova order, from `from` (inclusive) up to `to` (exclusive). */
  forEachLeaf(from: number, to: number, fn: LeafFn): void {
    this.visit(1, this.l1, 0, from, to, fn);
  }

  /**
   * One level of forEachLeaf: the entries of the table at `table` (covering iova `base` onwards) from the one that
   * holds `from`; a table entry recurses into the next level. A contiguous leaf is reported once, from its first
   * entry, even when `from` falls inside it. Returns false once fn asked to stop or `to` is reached.
   */
  private visit(lvl: Level, table: number, base: number, from: number, to: number, fn: LeafFn): boolean {
    const block = blockSize(lvl);
    for (let i = from > base ? Math.floor((from - base) / block) : 0; i < ptesPerLvl(lvl); i++) {
      const va = base + i * block;
      if (va >= to) return false;
      const pte = this.mem.read32(table + 4 * i);
      if (!pteIsValid(pte)) continue;
      if (pteIsTable(pte, lvl)) {
        if (!this.visit((lvl + 1) as Level, iopteDeref(pte), va, from, to, fn)) return false;
        continue;
      }
      const cont = pteIsCont(pte, lvl);
      const first = cont ? i & ~(CONT_PTES - 1) : i;
      if (cont) i = first + CONT_PTES - 1;
      const size = leafSize(pte, lvl);
      if (fn(base + first * block, (pte & -size) >>> 0, size, this.protOf(leafPerm(pte, lvl))) === false) return false;
    }
    return true;
  }

  /** Calls fn for every valid entry of the level's table at `table` and, depth first, of the tables it points to. */
  private eachPte(lvl: Level, table: number, fn: (lvl: Level, table: number, index: number, pte: number) => void): void {
    for (let i = 0; i < ptesPerLvl(lvl); i++) {
      const pte = this.mem.read32(table + 4 * i);
      if (!pteIsValid(pte)) continue;
      fn(lvl, table, i, pte);
      if (pteIsTable(pte, lvl)) this.eachPte((lvl + 1) as Level, iopteDeref(pte), fn);
    }
  }

  /** The raw tables: valid L1 entries and, for each L2 table, its valid entries. */
  dump(): { l1: Array<{ index: number; desc: number }>; l2: Array<{ base: number; entries: Array<{ index: number; desc: number }> }> } {
    const l1: Array<{ index: number; desc: number }> = [];
    const l2: Array<{ base: number; entries: Array<{ index: number; desc: number }> }> = [];
    this.eachPte(1, this.l1, (lvl, _table, index, desc) => {
      if (lvl === 2) {
        l2[l2.length - 1]!.entries.push({ index, desc });
        return;
      }
      l1.push({ index, desc });
      if (pteIsTable(desc, lvl)) l2.push({ base: iopteDeref(desc), entries: [] });
    });
    return { l1, l2 };
  }

  /** Frees every table of this page table (domain free). Only L2 tables inside the pool are ours to free. */
  free(): void {
    for (let i = 0; i < ptesPerLvl(1); i++) {
      const pte = this.mem.read32(this.l1 + 4 * i);
      if (!pteIsTable(pte, 1)) continue;
      const table = iopteDeref(pte);
      if (this.pool.contains(table)) {
        this.pool.claim(table);
        this.mem.zero(table, tableSize(2));
        this.pool.setLive(table, 0);
        this.pool.free(table, tableSize(2));
      }
    }
    this.pool.claim(this.l1);
    this.mem.zero(this.l1, tableSize(1));
    this.pool.wrote(this.l1);
    this.pool.free(this.l1, tableSize(1));
  }
}
