/**
 * The CPU's data cache (API.md v1.1, "CPU caches and non-coherent DMA"): one write-back, write-allocate, fully
 * associative cache with LRU replacement between the CPU and RAM. Devices reach RAM beneath it, except coherent
 * (ACP-style) masters, which snoop it. It also keeps what the coherency checks need per line: the bytes the CPU
 * stored and the bytes a device wrote since the line was filled or written back, and which checks were reported.
 *
 * Deterministic (an LRU list, snapshotted oldest first), so traces replay it exactly.
 */
import { hex } from '../errors.js';
import type { EventSink } from '../events/types.js';
import { CHUNK_SHIFT, type PhysMemory } from './phys.js';

export const COHERENCY_CHECKS = ['stale-cpu-read', 'device-read-stale', 'lost-device-write', 'cpu-access-device-owned'] as const;
export type CoherencyCheck = (typeof COHERENCY_CHECKS)[number];
const BIT: Record<CoherencyCheck, number> = { 'stale-cpu-read': 1, 'device-read-stale': 2, 'lost-device-write': 4, 'cpu-access-device-owned': 8 };

export interface CpuCacheConfig {
  lineSize: 32 | 64;
  lines: number;
  /** Devices that snoop the cache (ACP-style masters): no maintenance, no staleness. */
  coherent: string[];
}

/** Bytes of a buffer the device owns (mapped for DMA, between map/sync-for-device and sync-for-cpu/unmap). */
export interface OwnedRange {
  device: string;
  paddr: number;
  size: number;
  /** DMA address of `paddr`. */
  dmaAddr: number;
}

/** What the DMA layer tells the cache: who owns bytes, and which DMA address a device reaches them at. */
export interface DmaView {
  /** Device-owned ranges overlapping [paddr, paddr+len), or null when nothing is device-owned at all. */
  owned(paddr: number, len: number): OwnedRange[] | null;
  /** The DMA address at which `device` reaches `paddr` through a live mapping, if any. */
  dmaAddrOf(device: string, paddr: number): number | undefined;
}

export interface CacheLineSnapshot {
  addr: number;
  data: string;
  dirty: boolean;
  cpu: [number, number];
  dev: [number, number, string | null];
  reported: number;
}

export interface CpuCacheSnapshot {
  lines: CacheLineSnapshot[];
}

/** A finding waiting to be emitted: contiguous findings of one check, device and mapping merge into one event. */
interface Finding {
  check: CoherencyCheck;
  device: string | null;
  paddr: number;
  size: number;
  dmaAddr: number | undefined;
}

/** Slots of line storage to start with; the arrays double as lines are filled, up to the cache's capacity. */
const FIRST_SLOTS = 64;
const PAGE_SHIFT = 12;
const PAGE = 1 << PAGE_SHIFT;
/** The largest copy whose bytes go through the kept buffer (larger ones allocate their own). */
const SCRATCH_MAX = 1 << 20;
/** Pages per group of the page directory (4 MiB). */
const GROUP_SHIFT = 10;
const GROUP = 1 << GROUP_SHIFT;
const GROUPS = 2 ** (32 - PAGE_SHIFT - GROUP_SHIFT);
/** Empty page tables kept for reuse. */
const SPARE_TABLES = 64;

/** Copies n words: a loop for a line or two, the native copy beyond (its call costs more than a few words). */
function moveWords(dst: Uint32Array, di: number, src: Uint32Array, si: number, n: number): void {
  if (n <= 32) for (let i = 0; i < n; i++) dst[di + i] = src[si + i]!;
  else dst.set(src.subarray(si, si + n), di);
}

/**
 * The cache. Lines live in slots of flat arrays (one data arena, per-slot state, an LRU list linked through
 * prev/next), looked up through a table per 4 KiB page: a range operation costs one Map lookup per page and none
 * per line, and a fill reuses its victim's slot, so a bulk copy through the cache allocates nothing per line.
 */
export class CpuCache {
  readonly lineSize: number;
  readonly capacity: number;
  readonly coherent: ReadonlySet<string>;
  dma: DmaView | null = null;
  private readonly mask: number;
  private readonly shift: number;
  /** 32-bit words per line. */
  private readonly words: number;
  /** Lines per 4 KiB page; a page table's last element counts its cached lines. */
  private readonly perPage: number;
  /** log2 of perPage: a line number's page is line >>> pageShift. */
  private readonly pageShift: number;
  /**
   * Page number → slot + 1 of each line of the page (0: not cached), then the count; pages without lines have
   * none. Two levels, as RAM's chunks: a group of GROUP pages per entry. (A Map deleted and re-added a bounce
   * buffer's pages on every map+unmap, and its hash table's churn was a twentieth of the copy's time.)
   */
  private readonly pages = new Array<Array<Int32Array | undefined> | undefined>(GROUPS).fill(undefined);
  // Per slot.
  private addr = new Uint32Array(0);
  private dirty = new Uint8Array(0);
  /** Byte span [cpuLo, cpuHi) the CPU stored since the fill or the last write-back (empty when lo ≥ hi). */
  private cpuLo = new Uint8Array(0);
  private cpuHi = new Uint8Array(0);
  /** Byte span a non-coherent device wrote to RAM since the fill or the last write-back, and by whom. */
  private devLo = new Uint8Array(0);
  private devHi = new Uint8Array(0);
  private dev: Array<string | null> = [];
  /** Checks already reported for the line (bits of BIT) since it was filled, cleaned or invalidated. */
  private reported = new Uint8Array(0);
  /** The LRU list: head is the least recently used line, tail the most recent; -1 ends it. */
  private prev = new Int32Array(0);
  private next = new Int32Array(0);
  private head = -1;
  private tail = -1;
  private data = new Uint8Array(0);
  private data32 = new Uint32Array(0);
  private count = 0;
  /** Slots handed out so far; below it, free slots are the first `freeN` of `free` (a stack). */
  private fresh = 0;
  private free = new Int32Array(0);
  private freeN = 0;
  private pending: Finding | null = null;
  private scratch = new Uint8Array(0);
  /** Slots found by the last range lookup (see cached()). */
  private hits = new Int32Array(0);
  /** The page table last looked up (fills and drops of one buffer stay on a page for a while). */
  private memoPg = -1;
  private memoT: Int32Array | undefined;
  private spare: Int32Array[] = [];
  /** Lines a load placed whose bytes are still to be read from RAM: fillN lines from line fillL into slots from fillS. */
  private fillS = 0;
  private fillL = 0;
  private fillN = 0;

  constructor(
    private readonly mem: PhysMemory,
    cfg: CpuCacheConfig,
    private readonly sink: EventSink,
  ) {
    this.lineSize = cfg.lineSize;
    this.capacity = cfg.lines;
    this.coherent = new Set(cfg.coherent);
    this.mask = ~(cfg.lineSize - 1) >>> 0;
    this.shift = Math.log2(cfg.lineSize);
    this.words = cfg.lineSize >>> 2;
    this.perPage = PAGE / cfg.lineSize;
    this.pageShift = PAGE_SHIFT - this.shift;
  }

  get used(): number {
    return this.count;
  }

  isCoherent(device: string | null): boolean {
    return device !== null && this.coherent.has(device);
  }

  // ---- the CPU side ----------------------------------------------------------------------------------------------

  /**
   * A CPU load of [paddr, paddr+len): missing lines are filled from RAM; a hit on a line a device wrote beneath
   * is a stale-cpu-read. `owner` false exempts the load from the ownership check (bounce copies).
   */
  load(paddr: number, len: number, out: Uint8Array = new Uint8Array(len), owner = true): Uint8Array {
    if (owner) this.checkOwner(paddr, len);
    const ls = this.lineSize;
    // Whole aligned lines move as words, and lines in consecutive slots as one run (the bulk path of bounce
    // copies). A run is copied out before an eviction could reuse its slots, and at the end.
    const out32 = len >= 2 * ls && (out.byteOffset & 3) === 0 ? new Uint32Array(out.buffer, out.byteOffset, len >>> 2) : null;
    const w = this.words;
    let runS = 0;
    let runO = 0;
    let runN = 0;
    let pg = -1;
    let t: Int32Array | undefined;
    const ps = this.pageShift;
    const pm = this.perPage - 1;
    // Lines by number (paddr >>> shift, a small integer): an address of 2 GiB or more is a heap number wherever
    // it is boxed, and boxing one per line made this loop allocate about as many bytes as it copied.
    // (A range past 4 GiB wraps, as addresses do.)
    const lm = 0xffffffff >>> this.shift;
    // Hits still to be made most recent: the LRU list's lines from chainS to chainE, in that order (see touchChain).
    let chainS = -1;
    let chainE = -1;
    for (let line = paddr >>> this.shift, from = paddr & (ls - 1), o = 0; o < len; line = (line + 1) & lm, from = 0) {
      const n = Math.min(ls - from, len - o);
      if (line >>> ps !== pg) {
        pg = line >>> ps;
        t = this.table(pg);
      }
      let s = t === undefined ? -1 : t[line & pm]! - 1;
      if (s < 0) {
        if (chainE >= 0) {
          this.touchChain(chainS, chainE);
          chainE = -1;
        }
        if (this.count >= this.capacity) {
          this.flushFills();
          if (runN > 0) moveWords(out32!, runO >>> 2, this.data32, runS * w, runN * w);
          runN = 0;
        }
        s = this.fill(line, false);
        this.queueFill(s, line);
        t = this.table(pg);
      } else {
        if (chainE >= 0 && this.next[chainE] === s) chainE = s;
        else {
          if (chainE >= 0) this.touchChain(chainS, chainE);
          chainS = chainE = s;
        }
        if (this.devHi[s]! > this.devLo[s]! && !(this.reported[s]! & BIT['stale-cpu-read'])) {
          this.reported[s]! |= BIT['stale-cpu-read'];
          this.find('stale-cpu-read', this.dev[s]!, this.addr[s]! + this.devLo[s]!, this.devHi[s]! - this.devLo[s]!, this.dev[s]!);
        }
      }
      if (out32 !== null && n === ls && (o & 3) === 0) {
        if (runN > 0 && s === runS + runN && o === runO + runN * ls) runN++;
        else {
          if (runN > 0) {
            this.flushFills();
            moveWords(out32, runO >>> 2, this.data32, runS * w, runN * w);
          }
          runS = s;
          runO = o;
          runN = 1;
        }
      } else {
        this.flushFills();
        const d = this.data;
        for (let i = s * ls + from, e = i + n, j = o; i < e; i++, j++) out[j] = d[i]!;
      }
      o += n;
    }
    if (chainE >= 0) this.touchChain(chainS, chainE);
    this.flushFills();
    if (runN > 0) moveWords(out32!, runO >>> 2, this.data32, runS * w, runN * w);
    this.emitPending();
    return out;
  }

  /** A CPU store: write-allocate (the line is filled first when missing), then the line is dirty. */
  store(paddr: number, data: Uint8Array, owner = true): void {
    if (owner) this.checkOwner(paddr, data.length);
    const ls = this.lineSize;
    const len = data.length;
    const in32 = len >= 2 * ls && (data.byteOffset & 3) === 0 ? new Uint32Array(data.buffer, data.byteOffset, len >>> 2) : null;
    // As in load: runs of whole lines in consecutive slots are written in one go, before any eviction (a
    // write-back reads the line) and at the end; lines go by number.
    const w = this.words;
    let runS = 0;
    let runO = 0;
    let runN = 0;
    let pg = -1;
    let t: Int32Array | undefined;
    const ps = this.pageShift;
    const pm = this.perPage - 1;
    // (A range past 4 GiB wraps, as addresses do.)
    const lm = 0xffffffff >>> this.shift;
    let chainS = -1;
    let chainE = -1;
    for (let line = paddr >>> this.shift, from = paddr & (ls - 1), o = 0; o < len; line = (line + 1) & lm, from = 0) {
      const n = Math.min(ls - from, len - o);
      if (line >>> ps !== pg) {
        pg = line >>> ps;
        t = this.table(pg);
      }
      let s = t === undefined ? -1 : t[line & pm]! - 1;
      if (s < 0) {
        if (chainE >= 0) {
          this.touchChain(chainS, chainE);
          chainE = -1;
        }
        if (runN > 0 && this.count >= this.capacity) {
          moveWords(this.data32, runS * w, in32!, runO >>> 2, runN * w);
          runN = 0;
        }
        // A whole line about to be overwritten needs none of RAM's bytes.
        s = this.fill(line, !(in32 !== null && n === ls && (o & 3) === 0));
        t = this.table(pg);
      } else if (chainE >= 0 && this.next[chainE] === s) chainE = s;
      else {
        if (chainE >= 0) this.touchChain(chainS, chainE);
        chainS = chainE = s;
      }
      if (in32 !== null && n === ls && (o & 3) === 0) {
        if (runN > 0 && s === runS + runN && o === runO + runN * ls) runN++;
        else {
          if (runN > 0) moveWords(this.data32, runS * w, in32, runO >>> 2, runN * w);
          runS = s;
          runO = o;
          runN = 1;
        }
      } else {
        const d = this.data;
        for (let i = s * ls + from, e = i + n, j = o; i < e; i++, j++) d[i] = data[j]!;
      }
      this.dirty[s] = 1;
      if (this.cpuHi[s]! <= this.cpuLo[s]!) {
        this.cpuLo[s] = from;
        this.cpuHi[s] = from + n;
      } else {
        this.cpuLo[s] = Math.min(this.cpuLo[s]!, from);
        this.cpuHi[s] = Math.max(this.cpuHi[s]!, from + n);
      }
      o += n;
    }
    if (chainE >= 0) this.touchChain(chainS, chainE);
    if (runN > 0) moveWords(this.data32, runS * w, in32!, runO >>> 2, runN * w);
    this.emitPending();
  }

  /**
   * A CPU copy (memcpy through the cache): a load of the source, then a store of the destination, both exempt
   * from the ownership check (bounce copies). The bytes pass through a buffer kept for the next copy.
   */
  copy(from: number, to: number, len: number): void {
    let buf: Uint8Array;
    if (len > SCRATCH_MAX) buf = new Uint8Array(len);
    else {
      if (this.scratch.length < len) this.scratch = new Uint8Array(Math.max(PAGE, 2 ** Math.ceil(Math.log2(len))));
      buf = this.scratch.subarray(0, len);
    }
    this.store(to, this.load(from, len, buf, false), false);
  }

  // ---- maintenance -------------------------------------------------------------------------------------------------

  /** Writes the dirty lines of the (line-widened) range back to RAM; returns how many were written back. */
  clean(paddr: number, size: number): number {
    const k = this.cached(paddr, size);
    const n = this.writeBackHits(k);
    for (let i = 0; i < k; i++) this.reported[this.hits[i]!] = 0;
    this.emitPending();
    return n;
  }

  /** Drops the lines of the range (dirty data is lost, as on hardware); returns how many were dropped. */
  invalidate(paddr: number, size: number): number {
    const k = this.cached(paddr, size);
    this.dropHits(k);
    return k;
  }

  /** Clean, then invalidate; returns how many lines were dropped. */
  flush(paddr: number, size: number): number {
    const k = this.cached(paddr, size);
    this.writeBackHits(k);
    this.dropHits(k);
    this.emitPending();
    return k;
  }

  /**
   * The DMA API's invalidation (ARMv7 dma_inv_range): a partial line at either end is cleaned and invalidated,
   * so the neighbouring data sharing it survives; the whole lines between are invalidated.
   */
  dmaInvalidate(paddr: number, size: number): number {
    if (size <= 0) return 0;
    const ls = this.lineSize;
    const end = paddr + size;
    let n = 0;
    const first = (paddr & this.mask) >>> 0;
    const last = ((end - 1) & this.mask) >>> 0;
    if (paddr !== first) n += this.flush(first, 1);
    if (end !== last + ls && !(last === first && paddr !== first)) n += this.flush(last, 1);
    const lo = paddr === first ? first : first + ls;
    const hi = end === last + ls ? end : last;
    if (hi > lo) n += this.invalidate(lo, hi - lo);
    return n;
  }

  /** Drops lines without writing back and without checks (a new buffer's range, before it is zeroed). */
  discard(paddr: number, size: number): void {
    this.dropHits(this.cached(paddr, size));
  }

  // ---- the device side -------------------------------------------------------------------------------------------

  /**
   * A device reads RAM: a non-coherent device sees RAM beneath the cache (device-read-stale when the CPU holds
   * newer, dirty bytes for it); a coherent one snoops cached lines.
   */
  deviceRead(device: string | null, paddr: number, len: number, out: Uint8Array, outOffset: number): void {
    this.mem.readBytes(paddr, len, out, outOffset);
    const coherent = this.isCoherent(device);
    const ls = this.lineSize;
    const k = this.cached(paddr, len);
    for (let i = 0; i < k; i++) {
      const s = this.hits[i]!;
      const base = this.addr[s]!;
      if (coherent) {
        const lo = Math.max(base, paddr);
        const hi = Math.min(base + ls, paddr + len);
        out.set(this.data.subarray(s * ls + lo - base, s * ls + hi - base), outOffset + lo - paddr);
        continue;
      }
      if (!this.dirty[s] || this.cpuHi[s]! <= this.cpuLo[s]! || this.reported[s]! & BIT['device-read-stale']) continue;
      const lo = Math.max(base + this.cpuLo[s]!, paddr);
      const hi = Math.min(base + this.cpuHi[s]!, paddr + len);
      if (hi <= lo) continue;
      this.reported[s]! |= BIT['device-read-stale'];
      this.find('device-read-stale', device, lo, hi - lo, device);
    }
    this.emitPending();
  }

  /** A device writes RAM: cached lines of a non-coherent device's bytes go stale; a coherent one updates them. */
  deviceWrite(device: string | null, paddr: number, data: Uint8Array): void {
    this.mem.writeBytes(paddr, data);
    const coherent = this.isCoherent(device);
    const ls = this.lineSize;
    const end = paddr + data.length;
    const k = this.cached(paddr, data.length);
    for (let i = 0; i < k; i++) {
      const s = this.hits[i]!;
      const base = this.addr[s]!;
      const lo = Math.max(base, paddr) - base;
      const hi = Math.min(base + ls, end) - base;
      if (coherent) {
        this.data.set(data.subarray(base + lo - paddr, base + hi - paddr), s * ls + lo);
        continue;
      }
      if (this.devHi[s]! <= this.devLo[s]!) {
        this.devLo[s] = lo;
        this.devHi[s] = hi;
      } else {
        this.devLo[s] = Math.min(this.devLo[s]!, lo);
        this.devHi[s] = Math.max(this.devHi[s]!, hi);
      }
      this.dev[s] = device;
    }
  }

  // ---- inspection and state ------------------------------------------------------------------------------------

  /** Cached lines overlapping the range (all without one), in address order. */
  entries(paddr?: number, size?: number): Array<{ paddr: number; dirty: boolean }> {
    const out: Array<{ paddr: number; dirty: boolean }> = [];
    const add = (s: number) => out.push({ paddr: this.addr[s]!, dirty: this.dirty[s] === 1 });
    if (paddr === undefined) for (let s = this.head; s >= 0; s = this.next[s]!) add(s);
    else for (let i = 0, k = this.cached(paddr, size ?? this.lineSize); i < k; i++) add(this.hits[i]!);
    return out.sort((a, b) => a.paddr - b.paddr);
  }

  /** The cached copy of one line (for tests and views), or undefined. */
  peek(addr: number): { data: Uint8Array; dirty: boolean } | undefined {
    const s = this.slotOf((addr & this.mask) >>> 0);
    if (s < 0) return undefined;
    return { data: this.data.slice(s * this.lineSize, (s + 1) * this.lineSize), dirty: this.dirty[s] === 1 };
  }

  /** Lines in LRU order (least recently used first): the order is state, as replacement depends on it. */
  snapshot(): CpuCacheSnapshot {
    const lines: CacheLineSnapshot[] = [];
    const ls = this.lineSize;
    for (let s = this.head; s >= 0; s = this.next[s]!) {
      lines.push({
        addr: this.addr[s]!,
        data: Buffer.from(this.data.buffer, this.data.byteOffset + s * ls, ls).toString('base64'),
        dirty: this.dirty[s] === 1,
        cpu: [this.cpuLo[s]!, this.cpuHi[s]!],
        dev: [this.devLo[s]!, this.devHi[s]!, this.dev[s]!],
        reported: this.reported[s]!,
      });
    }
    return { lines };
  }

  restore(snap: CpuCacheSnapshot): void {
    this.pages.fill(undefined);
    this.memoPg = -1;
    this.head = this.tail = -1;
    this.count = this.fresh = 0;
    this.freeN = 0;
    for (const x of snap.lines) {
      const s = this.place(x.addr >>> this.shift);
      this.data.set(Buffer.from(x.data, 'base64'), s * this.lineSize);
      this.dirty[s] = x.dirty ? 1 : 0;
      [this.cpuLo[s], this.cpuHi[s]] = x.cpu;
      [this.devLo[s], this.devHi[s], this.dev[s]] = x.dev;
      this.reported[s] = x.reported;
    }
  }

  // ---- internals -------------------------------------------------------------------------------------------------

  private table(pg: number): Int32Array | undefined {
    if (pg !== this.memoPg) {
      this.memoPg = pg;
      this.memoT = this.pages[pg >>> GROUP_SHIFT]?.[pg & (GROUP - 1)];
    }
    return this.memoT;
  }

  private slotOf(base: number): number {
    const t = this.table(base >>> PAGE_SHIFT);
    return t === undefined ? -1 : t[(base & (PAGE - 1)) >>> this.shift]! - 1;
  }

  /** Makes a line most recently used. */
  private touch(s: number): void {
    if (s === this.tail) return;
    this.unlink(s);
    this.linkTail(s);
  }

  /**
   * Touches, in list order, the lines of the LRU list from a to b (each line's next is the following one): as one
   * move of the segment to the tail. A copy's hits are mostly such runs (the lines were last used in address order).
   */
  private touchChain(a: number, b: number): void {
    if (b === this.tail) return;
    const p = this.prev[a]!;
    const n = this.next[b]!;
    if (p >= 0) this.next[p] = n;
    else this.head = n;
    this.prev[n] = p;
    this.prev[a] = this.tail;
    this.next[this.tail] = a;
    this.next[b] = -1;
    this.tail = b;
  }

  private unlink(s: number): void {
    const p = this.prev[s]!;
    const n = this.next[s]!;
    if (p >= 0) this.next[p] = n;
    else this.head = n;
    if (n >= 0) this.prev[n] = p;
    else this.tail = p;
  }

  private linkTail(s: number): void {
    this.prev[s] = this.tail;
    this.next[s] = -1;
    if (this.tail >= 0) this.next[this.tail] = s;
    else this.head = s;
    this.tail = s;
  }

  /**
   * Fills line number `line` from RAM, evicting the least recently used (written back when dirty) if the cache is
   * full. RAM is given the line's address in its signed 32-bit form (a small integer; RAM uses only its bits).
   */
  private fill(line: number, data = true): number {
    if (this.count >= this.capacity) {
      const victim = this.head;
      if (this.dirty[victim]) this.writeBack(victim);
      this.drop(victim);
    }
    const s = this.place(line);
    if (data) this.mem.readWords(line << this.shift, this.words, this.data32, s * this.words);
    return s;
  }

  /**
   * A load's fill whose bytes are read from RAM later: consecutive lines in consecutive slots within one RAM
   * chunk are read as one run, before anything reads those slots or could reuse them (see load).
   */
  private queueFill(s: number, line: number): void {
    const n = this.fillN;
    const cs = CHUNK_SHIFT - this.shift;
    if (n > 0 && s === this.fillS + n && line === this.fillL + n && line >>> cs === this.fillL >>> cs) {
      this.fillN = n + 1;
      return;
    }
    this.flushFills();
    this.fillS = s;
    this.fillL = line;
    this.fillN = 1;
  }

  private flushFills(): void {
    if (this.fillN === 0) return;
    this.mem.readWords(this.fillL << this.shift, this.fillN * this.words, this.data32, this.fillS * this.words);
    this.fillN = 0;
  }

  /** Takes a slot for a clean line (by number), most recently used, with no history. */
  private place(line: number): number {
    let s: number;
    if (this.freeN > 0) s = this.free[--this.freeN]!;
    else {
      if (this.fresh === this.addr.length) this.grow();
      s = this.fresh++;
    }
    this.addr[s] = line << this.shift;
    this.dirty[s] = 0;
    this.cpuLo[s] = this.cpuHi[s] = 0;
    this.devLo[s] = this.devHi[s] = 0;
    this.dev[s] = null;
    this.reported[s] = 0;
    this.linkTail(s);
    this.count++;
    const pg = line >>> this.pageShift;
    let t = this.table(pg);
    if (t === undefined) {
      const g = (this.pages[pg >>> GROUP_SHIFT] ??= new Array<Int32Array | undefined>(GROUP).fill(undefined));
      g[pg & (GROUP - 1)] = t = this.spare.pop() ?? new Int32Array(this.perPage + 1);
      this.memoT = t;
    }
    t[line & (this.perPage - 1)] = s + 1;
    t[this.perPage]!++;
    return s;
  }

  /**
   * Drops the k lines found by cached(), last first: their slots then come off the free list in address order,
   * so refilling the range puts consecutive lines in consecutive slots (runs for load and store).
   */
  private dropHits(k: number): void {
    const hits = this.hits;
    for (let i = k - 1; i >= 0; ) {
      // Hits that follow one another in the LRU list leave it as one segment.
      let j = i;
      while (j > 0 && this.next[hits[j - 1]!] === hits[j]) j--;
      const a = hits[j]!;
      const b = hits[i]!;
      const p = this.prev[a]!;
      const n = this.next[b]!;
      if (p >= 0) this.next[p] = n;
      else this.head = n;
      if (n >= 0) this.prev[n] = p;
      else this.tail = p;
      for (; i >= j; i--) this.release(hits[i]!);
    }
  }

  private drop(s: number): void {
    this.unlink(s);
    this.release(s);
  }

  /** Frees an unlinked line's slot and its place in the page table. */
  private release(s: number): void {
    this.count--;
    const line = this.addr[s]! >>> this.shift;
    const pg = line >>> this.pageShift;
    const t = this.table(pg)!;
    t[line & (this.perPage - 1)] = 0;
    if (--t[this.perPage]! === 0) {
      this.pages[pg >>> GROUP_SHIFT]![pg & (GROUP - 1)] = undefined;
      this.memoT = undefined;
      // All zero again: kept for the next page (a buffer invalidated, then refilled).
      if (this.spare.length < SPARE_TABLES) this.spare.push(t);
    }
    this.dev[s] = null;
    this.free[this.freeN++] = s;
  }

  /** Doubles the slot arrays (up to the capacity): a small cache, or one barely used, stays small. */
  private grow(): void {
    const n = Math.min(this.capacity, Math.max(FIRST_SLOTS, this.addr.length * 2));
    const more = <T extends Uint8Array | Uint32Array | Int32Array>(old: T, make: (n: number) => T): T => {
      const a = make(n);
      a.set(old);
      return a;
    };
    this.addr = more(this.addr, (k) => new Uint32Array(k));
    this.dirty = more(this.dirty, (k) => new Uint8Array(k));
    this.cpuLo = more(this.cpuLo, (k) => new Uint8Array(k));
    this.cpuHi = more(this.cpuHi, (k) => new Uint8Array(k));
    this.devLo = more(this.devLo, (k) => new Uint8Array(k));
    this.devHi = more(this.devHi, (k) => new Uint8Array(k));
    this.reported = more(this.reported, (k) => new Uint8Array(k));
    this.prev = more(this.prev, (k) => new Int32Array(k));
    this.next = more(this.next, (k) => new Int32Array(k));
    this.free = more(this.free, (k) => new Int32Array(k));
    this.data32 = more(this.data32, (k) => new Uint32Array(k * this.words));
    this.data = new Uint8Array(this.data32.buffer);
  }

  /** Writes a whole line back; bytes a device wrote since the fill are overwritten (lost-device-write). */
  private writeBack(s: number): void {
    this.mem.writeWords(this.addr[s]! | 0, this.data32, s * this.words, this.words);
    this.written(s);
  }

  /**
   * Writes back the dirty lines among the k found by cached(); returns how many. Consecutive lines in
   * consecutive slots within one RAM chunk go to RAM as one run (a bounce buffer's slots, cleaned after the copy).
   */
  private writeBackHits(k: number): number {
    const w = this.words;
    const sh = this.shift;
    const cs = CHUNK_SHIFT - sh;
    let n = 0;
    let runS = 0;
    let runL = 0;
    let runN = 0;
    for (let i = 0; i < k; i++) {
      const s = this.hits[i]!;
      if (!this.dirty[s]) continue;
      const line = this.addr[s]! >>> sh;
      if (runN > 0 && s === runS + runN && line === runL + runN && line >>> cs === runL >>> cs) runN++;
      else {
        if (runN > 0) this.mem.writeWords(runL << sh, this.data32, runS * w, runN * w);
        runS = s;
        runL = line;
        runN = 1;
      }
      this.written(s);
      n++;
    }
    if (runN > 0) this.mem.writeWords(runL << sh, this.data32, runS * w, runN * w);
    return n;
  }

  /** A line's state once written back: clean, no history (the lost-device-write check first). */
  private written(s: number): void {
    if (this.devHi[s]! > this.devLo[s]! && !(this.reported[s]! & BIT['lost-device-write'])) {
      this.find('lost-device-write', this.dev[s]!, this.addr[s]! + this.devLo[s]!, this.devHi[s]! - this.devLo[s]!, this.dev[s]!);
    }
    this.dirty[s] = 0;
    this.cpuLo[s] = this.cpuHi[s] = 0;
    this.devLo[s] = this.devHi[s] = 0;
    this.dev[s] = null;
    this.reported[s] = 0;
  }

  /** Puts the slots of the cached lines overlapping [paddr, paddr+size) in `hits`, in address order; returns how many. */
  private cached(paddr: number, size: number): number {
    if (size <= 0 || this.count === 0) return 0;
    if (this.hits.length < this.count) this.hits = new Int32Array(this.addr.length);
    // Lines by number, as in load.
    const first = paddr >>> this.shift;
    const last = (paddr + size - 1) >>> this.shift;
    const firstPage = first >>> this.pageShift;
    const lastPage = last >>> this.pageShift;
    let n = 0;
    for (let gi = firstPage >>> GROUP_SHIFT, gl = lastPage >>> GROUP_SHIFT; gi <= gl; gi++) {
      // A group without tables is skipped whole: a range far larger than what is cached costs its groups.
      const g = this.pages[gi];
      if (g === undefined) continue;
      for (let pg = Math.max(firstPage, gi << GROUP_SHIFT), e = Math.min(lastPage, ((gi + 1) << GROUP_SHIFT) - 1); pg <= e; pg++) {
        const t = g[pg & (GROUP - 1)];
        if (t !== undefined) n = this.visit(t, pg, first, last, n);
      }
    }
    return n;
  }

  /** Adds to `hits` from index n the slots of page pg's cached lines among lines first..last; returns the new n. */
  private visit(t: Int32Array, pg: number, first: number, last: number, n: number): number {
    const hits = this.hits;
    const ps = this.pageShift;
    const lo = Math.max(first, pg << ps) & (this.perPage - 1);
    const hi = Math.min(last, ((pg + 1) << ps) - 1) & (this.perPage - 1);
    // The page's count bounds the lines to find: a partly filled page stops at its last cached line.
    let left = t[this.perPage]!;
    for (let i = lo; i <= hi && left > 0; i++) {
      const s = t[i]! - 1;
      if (s >= 0) {
        hits[n++] = s;
        left--;
      }
    }
    return n;
  }

  private checkOwner(paddr: number, len: number): void {
    const owned = this.dma?.owned(paddr, len);
    if (!owned) return;
    const ls = this.lineSize;
    for (const r of owned) {
      const lo = Math.max(r.paddr, paddr);
      const hi = Math.min(r.paddr + r.size, paddr + len);
      // Once per line: the line's reported bit is set as the access fills or finds it.
      for (let a = lo; a < hi; ) {
        const base = (a & this.mask) >>> 0;
        const n = Math.min(base + ls, hi) - a;
        let s = this.slotOf(base);
        if (s < 0) s = this.fill(base >>> this.shift);
        else this.touch(s);
        if (!(this.reported[s]! & BIT['cpu-access-device-owned'])) {
          this.reported[s]! |= BIT['cpu-access-device-owned'];
          this.find('cpu-access-device-owned', r.device, a, n, null, r.dmaAddr + (a - r.paddr));
        }
        a += n;
      }
    }
  }

  /** Queues a finding, merged with the previous one when it continues it. */
  private find(check: CoherencyCheck, device: string | null, paddr: number, size: number, mappedBy: string | null, dmaAddr?: number): void {
    const dma = dmaAddr ?? (mappedBy !== null ? this.dma?.dmaAddrOf(mappedBy, paddr) : undefined);
    const p = this.pending;
    if (
      p && p.check === check && p.device === device && p.paddr + p.size === paddr &&
      (p.dmaAddr === undefined ? dma === undefined : dma === p.dmaAddr + p.size)
    ) {
      p.size += size;
      return;
    }
    this.emitPending();
    this.pending = { check, device, paddr, size, dmaAddr: dma };
  }

  private emitPending(): void {
    const p = this.pending;
    if (!p) return;
    this.pending = null;
    this.sink.emit({ type: 'coherency', check: p.check, device: p.device, paddr: hex(p.paddr), size: p.size, ...(p.dmaAddr !== undefined ? { dmaAddr: hex(p.dmaAddr) } : {}) });
  }
}

/** Checks a cpuCache setting (API.md): BAD_REQUEST details name the field. Returns the completed config. */
export function cacheConfig(raw: { lineSize?: number; lines?: number; coherent?: string[] }, devices: ReadonlySet<string>): CpuCacheConfig | string {
  const lineSize = raw.lineSize ?? 32;
  const lines = raw.lines ?? 8192;
  if (lineSize !== 32 && lineSize !== 64) return 'lineSize';
  if (!Number.isInteger(lines) || lines < 1 || lines > 65536) return 'lines';
  for (const d of raw.coherent ?? []) if (!devices.has(d)) return 'coherent';
  return { lineSize, lines, coherent: [...(raw.coherent ?? [])] };
}
