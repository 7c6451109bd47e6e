import { UndoLog } from './undo.js';

export interface MemoryRegion {
  name: string;
  base: number;
  size: number;
}

/** Sparse RAM is held in 64 KiB chunks allocated on first write; never-written memory reads as zero. */
export const CHUNK_SHIFT = 16;
export const CHUNK_SIZE = 1 << CHUNK_SHIFT;
const CHUNK_COUNT = 2 ** 32 / CHUNK_SIZE;
const WORD_MASK = (CHUNK_SIZE - 1) >>> 2 << 2;
/** What tableWord reads outside RAM: no 32-bit word, signed or not. */
export const OUTSIDE_RAM = 2 ** 32;
/** Chunks per directory entry (16 MiB of physical space): an idle session holds only the 256-entry directory. */
const GROUP_SHIFT = 8;
const GROUP_SIZE = 1 << GROUP_SHIFT;
const GROUP_MASK = GROUP_SIZE - 1;

if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) {
  // Descriptors are little-endian words; the typed-array fast path assumes a little-endian host.
  throw new Error('iommud needs a little-endian host');
}

/** The chunks of one 16 MiB group: allocated on the first write inside it. */
class ChunkGroup {
  readonly words: Array<Uint32Array | null> = new Array<Uint32Array | null>(GROUP_SIZE).fill(null);
  readonly bytes: Array<Uint8Array | null> = new Array<Uint8Array | null>(GROUP_SIZE).fill(null);
  readonly versions = new Uint32Array(GROUP_SIZE);
}

/** The directory of a memory never written (every group null): shared, replaced by the first allocChunk. */
const NO_GROUPS: Array<ChunkGroup | null> = new Array<ChunkGroup | null>(CHUNK_COUNT >>> GROUP_SHIFT).fill(null);

/** RAM maps by region layout: read-only, so every session of a profile shares one. */
const ramMaps = new Map<string, Uint8Array>();

/** The same, by the profile's own regions array (sessions of a built-in profile skip building the key). */
const ramMapsByRegions = new WeakMap<readonly MemoryRegion[], Uint8Array>();

function ramMapOf(regions: readonly MemoryRegion[]): Uint8Array {
  const known = ramMapsByRegions.get(regions);
  if (known) return known;
  const m = ramMapByKey(regions);
  ramMapsByRegions.set(regions, m);
  return m;
}

function regionsKey(regions: readonly MemoryRegion[]): string {
  return regions.map((r) => `${r.base}+${r.size}`).join(',');
}

function ramMapByKey(regions: readonly MemoryRegion[]): Uint8Array {
  const key = regionsKey(regions);
  let m = ramMaps.get(key);
  if (m) return m;
  m = new Uint8Array(CHUNK_COUNT);
  for (const r of regions) {
    const end = r.base + r.size;
    for (let c = Math.floor(r.base / CHUNK_SIZE); c * CHUNK_SIZE < end; c++) {
      const whole = c * CHUNK_SIZE >= r.base && (c + 1) * CHUNK_SIZE <= end;
      m[c] = whole ? 1 : Math.max(m[c]!, 2);
    }
  }
  // Profiles are few (built-in ones and what clients send): keep the cache from growing without bound.
  if (ramMaps.size >= 64) ramMaps.clear();
  ramMaps.set(key, m);
  return m;
}

/**
 * The session's emulated physical memory: a 32-bit physical space with RAM only where the profile has regions.
 * Every write bumps the version of its chunk, which lets a TLB entry check cheaply whether the descriptors it
 * was filled from may have changed (the stale-TLB detector).
 */
export class PhysMemory {
  readonly regions: readonly MemoryRegion[];
  /** Chunk groups by addr >>> 24, null until something in the group is written. */
  private dir: Array<ChunkGroup | null> = NO_GROUPS;
  /** Per chunk: 1 = wholly RAM, 2 = partly RAM (ask the regions), 0 = none. Shared, never written. */
  private readonly ramMap: Uint8Array;
  /** Rises with every write anywhere: a TLB entry filled at the current generation needs no per-chunk check. */
  gen = 0;
  private chunkCount = 0;
  undo: UndoLog | null = null;
  /** Called for every chunk allocated (a daemon's count of the RAM its sessions hold). */
  onChunk: (() => void) | null = null;

  constructor(regions: readonly MemoryRegion[]) {
    this.regions = regions.map((r) => ({ ...r }));
    this.ramMap = ramMapOf(regions);
  }

  /** Write count of a chunk (0 for one never written). */
  version(ci: number): number {
    const g = this.dir[ci >>> GROUP_SHIFT]!;
    return g === null ? 0 : g.versions[ci & GROUP_MASK]!;
  }

  private words(ci: number): Uint32Array | null {
    const g = this.dir[ci >>> GROUP_SHIFT]!;
    return g === null ? null : g.words[ci & GROUP_MASK]!;
  }

  private bytes(ci: number): Uint8Array | null {
    const g = this.dir[ci >>> GROUP_SHIFT]!;
    return g === null ? null : g.bytes[ci & GROUP_MASK]!;
  }

  private bump(ci: number): void {
    this.dir[ci >>> GROUP_SHIFT]!.versions[ci & GROUP_MASK]!++;
    this.gen++;
  }

  /** Whether addr (unsigned, or the same 32 bits signed) is RAM. */
  isRam(addr: number): boolean {
    const m = this.ramMap[addr >>> CHUNK_SHIFT];
    if (m !== 2) return m === 1;
    const a = addr >>> 0;
    for (const r of this.regions) if (a >= r.base && a < r.base + r.size) return true;
    return false;
  }

  /** True when every byte of [addr, addr+size) is RAM. */
  isRamRange(addr: number, size: number): boolean {
    if (size <= 0) return false;
    for (const r of this.regions) {
      if (addr >= r.base && addr + size <= r.base + r.size) return true;
    }
    // A range may span adjacent regions.
    let a = addr;
    const end = addr + size;
    while (a < end) {
      const r = this.regions.find((x) => a >= x.base && a < x.base + x.size);
      if (!r) return false;
      a = r.base + r.size;
    }
    return true;
  }

  read32(addr: number): number {
    const g = this.dir[addr >>> 24]!;
    if (g === null) return 0;
    const w = g.words[(addr >>> CHUNK_SHIFT) & GROUP_MASK]!;
    return w === null ? 0 : w[(addr & WORD_MASK) >>> 2]!;
  }

  /**
   * The word at addr as a table walk reads it: read32's 32 bits signed (x | 0), or OUTSIDE_RAM when addr is not RAM
   * (the walk's external abort). addr may be signed too. One call where the walk made two, and no heap number: a
   * signed word is a small integer to V8, where an unsigned one of 2^31 or more (tables and RAM above 2 GiB) became
   * a heap number in each call it crossed (four per walk when V8's inlining did not reach the walk's reads).
   */
  tableWord(addr: number): number {
    const m = this.ramMap[addr >>> CHUNK_SHIFT];
    if (m !== 1 && (m === 0 || !this.isRam(addr))) return OUTSIDE_RAM;
    const g = this.dir[addr >>> 24]!;
    if (g === null) return 0;
    const w = g.words[(addr >>> CHUNK_SHIFT) & GROUP_MASK]!;
    return w === null ? 0 : w[(addr & WORD_MASK) >>> 2]! | 0;
  }

  write32(addr: number, value: number): void {
    const ci = addr >>> CHUNK_SHIFT;
    const w = this.words(ci) ?? this.allocChunk(ci);
    const i = (addr & WORD_MASK) >>> 2;
    if (this.undo) this.undo.word(addr, w[i]!);
    w[i] = value;
    this.bump(ci);
  }

  /**
   * Calls fn for each chunk piece of [addr, addr+len): chunk index, offset inside the chunk, length, and the
   * offset of the piece from addr.
   */
  private eachPiece(addr: number, len: number, fn: (ci: number, from: number, n: number, done: number) => void): void {
    let a = addr;
    const end = addr + len;
    while (a < end) {
      const ci = a >>> CHUNK_SHIFT;
      const stop = Math.min(end, (ci + 1) * CHUNK_SIZE);
      fn(ci, a & (CHUNK_SIZE - 1), stop - a, a - addr);
      a = stop;
    }
  }

  /** Records a piece's old bytes in the undo log, then marks the chunk written. */
  private touch(ci: number, b: Uint8Array, from: number, n: number): void {
    if (this.undo) {
      const saved = b.slice(from, from + n);
      this.undo.addAction(() => b.set(saved, from));
    }
    this.bump(ci);
  }

  /** Zeroes [addr, addr+len); chunks never written stay unallocated (they already read as zero). */
  zero(addr: number, len: number): void {
    this.eachPiece(addr, len, (ci, from, n) => {
      const b = this.bytes(ci);
      if (!b) return;
      this.touch(ci, b, from, n);
      b.fill(0, from, from + n);
    });
  }

  readBytes(addr: number, len: number, out: Uint8Array = new Uint8Array(len), outOffset = 0): Uint8Array {
    this.eachPiece(addr, len, (ci, from, n, done) => {
      const b = this.bytes(ci);
      if (b) out.set(b.subarray(from, from + n), outOffset + done);
      else out.fill(0, outOffset + done, outOffset + done + n);
    });
    return out;
  }

  writeBytes(addr: number, data: Uint8Array): void {
    this.eachPiece(addr, data.length, (ci, from, n, done) => {
      const b = this.bytes(ci) ?? (this.allocChunk(ci), this.bytes(ci)!);
      this.touch(ci, b, from, n);
      b.set(data.subarray(done, done + n), from);
    });
  }

  /**
   * Copies the n words at word-aligned addr (inside one chunk) into dst from index di: cache line fills, without
   * the per-piece walk of readBytes. Never-written memory reads as zero.
   */
  readWords(addr: number, n: number, dst: Uint32Array, di: number): void {
    const w = this.words(addr >>> CHUNK_SHIFT);
    // Loops for a line: a native call costs more than a few words; native for a run of lines.
    if (w === null) {
      if (n <= 32) for (let i = di, e = di + n; i < e; i++) dst[i] = 0;
      else dst.fill(0, di, di + n);
      return;
    }
    const first = (addr & WORD_MASK) >>> 2;
    if (n <= 32) for (let i = first, e = first + n; i < e; i++) dst[di++] = w[i]!;
    else dst.set(w.subarray(first, first + n), di);
  }

  /**
   * Writes n words from src[si] at word-aligned addr (inside one chunk): cache line write-backs, page-table runs.
   * `overZero`: the caller knows the words it replaces are zero (a page table's unused entries), so the undo log
   * keeps one entry that zeroes them again instead of each old word.
   */
  writeWords(addr: number, src: Uint32Array, si: number, n: number, overZero = false): void {
    const ci = addr >>> CHUNK_SHIFT;
    const w = this.words(ci) ?? this.allocChunk(ci);
    const first = (addr & WORD_MASK) >>> 2;
    if (this.undo) {
      if (overZero) this.undo.zeroRun(addr, n);
      else for (let i = 0; i < n; i++) this.undo.word(addr + 4 * i, w[first + i]!);
    }
    // A loop for a line; the native copy for a run of lines (its call costs more than a few words).
    if (n <= 32) for (let i = first, e = first + n; i < e; i++) w[i] = src[si++]!;
    else w.set(src.subarray(si, si + n), first);
    this.bump(ci);
  }

  /**
   * Copies [from, from+len) to [to, to+len) chunk piece by chunk piece, with no buffer in between (a bounce copy
   * without a CPU cache: a 64 KiB temporary costs more than the copy). Overlapping ranges copy as memmove does.
   */
  copy(from: number, to: number, len: number): void {
    if (from < to + len && to < from + len) {
      this.writeBytes(to, this.readBytes(from, len));
      return;
    }
    this.eachPiece(to, len, (ci, at, n, done) => {
      const b = this.bytes(ci) ?? (this.allocChunk(ci), this.bytes(ci)!);
      this.touch(ci, b, at, n);
      // The source piece may itself span two chunks.
      for (let a = from + done, o = at, end = from + done + n; a < end; ) {
        const sc = a >>> CHUNK_SHIFT;
        const stop = Math.min(end, (sc + 1) * CHUNK_SIZE);
        const s = this.bytes(sc);
        const sf = a & (CHUNK_SIZE - 1);
        if (s) b.set(s.subarray(sf, sf + stop - a), o);
        else b.fill(0, o, o + stop - a);
        o += stop - a;
        a = stop;
      }
    });
  }

  /** Every written chunk, for a snapshot: chunk index → base64 of its 64 KiB. */
  snapshot(): Record<number, string> {
    const out: Record<number, string> = {};
    this.dir.forEach((g, gi) => {
      g?.bytes.forEach((b, i) => {
        if (b) out[(gi << GROUP_SHIFT) | i] = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
      });
    });
    return out;
  }

  restore(chunks: Record<number, string>): void {
    // A chunk the snapshot does not hold was first written after it: it reads as zeros again.
    this.dir.forEach((g, gi) => {
      g?.bytes.forEach((b, i) => {
        const ci = (gi << GROUP_SHIFT) | i;
        if (b && chunks[ci] === undefined) {
          b.fill(0);
          this.bump(ci);
        }
      });
    });
    for (const [ci, b64] of Object.entries(chunks)) {
      const i = Number(ci);
      const b = this.bytes(i) ?? (this.allocChunk(i), this.bytes(i)!);
      b.set(Buffer.from(b64, 'base64'));
      this.bump(i);
    }
    this.gen++;
  }

  /** Bytes of host memory the emulated RAM holds (allocated chunks). */
  get bytesHeld(): number {
    return this.chunkCount * CHUNK_SIZE;
  }

  /** Bytes a write of [addr, addr+len) would add to bytesHeld (its chunks not yet allocated). */
  bytesToHold(addr: number, len: number): number {
    let n = 0;
    for (let ci = addr >>> CHUNK_SHIFT, last = (addr + len - 1) >>> CHUNK_SHIFT; ci <= last; ci++) if (this.bytes(ci) === null) n++;
    return n * CHUNK_SIZE;
  }

  /** Bytes of RAM not yet held: no write can add more than this to bytesHeld (writes outside RAM are dropped). */
  get bytesUnheld(): number {
    let ram = 0;
    for (let c = 0; c < CHUNK_COUNT; c++) if (this.ramMap[c] !== 0) ram++;
    return (ram - this.chunkCount) * CHUNK_SIZE;
  }

  /** True when every 32-bit word of [addr, addr+len) reads as zero (len a multiple of 4, within one chunk). */
  allZero(addr: number, len: number): boolean {
    const w = this.words(addr >>> CHUNK_SHIFT);
    if (!w) return true;
    const first = (addr & WORD_MASK) >>> 2;
    for (let i = first, end = first + (len >>> 2); i < end; i++) if (w[i] !== 0) return false;
    return true;
  }

  /** One log reused by every operation: an operation's undo costs no allocation beyond its entries. */
  private readonly log = new UndoLog();

  /** Opens an undo log; nested calls join the outer one. Returns whether this call owns it. */
  begin(): boolean {
    if (this.undo) return false;
    this.log.reset();
    this.undo = this.log;
    return true;
  }

  commit(): void {
    this.undo = null;
  }

  rollback(): void {
    const log = this.undo;
    this.undo = null;
    if (!log) return;
    const { words, actions } = log;
    let ai = actions.length - 1;
    for (let i = log.n - 2; i >= -2; i -= 2) {
      // Closures registered after word i/2 run before that word is restored: exact reverse order.
      while (ai >= 0 && actions[ai]!.at > i + 1) actions[ai--]!.undo();
      if (i < 0) break;
      let addr = words[i]!;
      const zeroRun = addr < 0;
      if (zeroRun) addr = -addr - 1;
      const ci = addr >>> CHUNK_SHIFT;
      const w = this.words(ci)!;
      const at = (addr & WORD_MASK) >>> 2;
      if (zeroRun) w.fill(0, at, at + words[i + 1]!);
      else w[at] = words[i + 1]!;
      this.bump(ci);
    }
    while (ai >= 0) actions[ai--]!.undo();
  }

  /** Runs fn all-or-nothing: any throw rolls memory (and registered allocator actions) back. */
  atomically<T>(fn: () => T): T {
    const owner = this.begin();
    try {
      const r = fn();
      if (owner) this.commit();
      return r;
    } catch (e) {
      if (owner) this.rollback();
      throw e;
    }
  }

  private allocChunk(ci: number): Uint32Array {
    const gi = ci >>> GROUP_SHIFT;
    if (this.dir === NO_GROUPS) this.dir = NO_GROUPS.slice();
    const g = this.dir[gi] ?? (this.dir[gi] = new ChunkGroup());
    const buf = new ArrayBuffer(CHUNK_SIZE);
    const w = new Uint32Array(buf);
    g.words[ci & GROUP_MASK] = w;
    g.bytes[ci & GROUP_MASK] = new Uint8Array(buf);
    this.chunkCount++;
    this.onChunk?.();
    return w;
  }
}
