/**
 * One SMMU's TLB (IDR.TLBSIZE): leaf translations tagged by bank and ASID, shared by the SMMU's banks.
 * Lookups are one probe of a hash over typed arrays per page size in use by the bank (a warm 4K hit: one array
 * read); a miss's fill reuses its slot's entry and finds the LRU victim without a scan: nothing is allocated.
 */
export type TlbPolicy = 'lru' | 'round-robin' | 'flush-all';

export interface TlbStats {
  hits: number;
  misses: number;
  evictions: number;
  invalidations: number;
}

/**
 * One TLB slot's entry. The TLB owns one per slot, made on the slot's first fill and refilled in place after
 * (a miss allocates nothing): read an entry before the next fill of the same TLB.
 */
export class TlbEntry {
  /** Last use (the TLB's clock, one tick per use): LRU evicts the smallest. */
  used = 0;
  /** The tick of the fill: which fill of the slot this is, and the fill order. */
  filled = 0;
  bank = 0;
  asid = 0;
  key = 0;
  sizeIdx = 0;
  vaBase = 0;
  size = 0;
  paBase = 0;
  perm = 0;
  /** paBase - vaBase: an address inside the entry translates to va + offset. */
  offset = 0;
  /**
   * Permission outcomes precomputed at fill: bit (access * 2 + priv) set when allowed with SCTLR.AFE set, the
   * same six bits from bit 6 up for AFE clear (the only SCTLR field the check reads).
   */
  ok = 0;
  /** Memory generation when the descriptors were last known unchanged (PhysMemory.gen). */
  gen = -1;
  /** TTBR0 and the versions of the descriptor chunks the entry was filled from: the stale-TLB detector. */
  ttbr0 = 0;
  c1 = 0;
  v1 = 0;
  c2 = 0;
  v2 = 0;
  constructor(readonly slot: number) {}
}

/** Page-number masks per size index (4K, 64K, 1M, 16M) over va >>> 12. */
const VPN_MASK = [0xfffff, 0xffff0, 0xfff00, 0xff000];

export function tlbKey(asid: number, va: number, sizeIdx: number): number {
  return (asid << 20) | ((va >>> 12) & VPN_MASK[sizeIdx]!);
}

/** Returned by lookup when two entries match: the hardware raises a multiple-hit fault (MHF). */
export const MULTI_HIT = Symbol('multi-hit');

/** Counters of a TLB never filled: all zero, shared (frozen: only a filled TLB counts, in arrays of its own). */
const ZEROS = new Map<number, readonly number[]>();
function zeros(n: number): number[] {
  let z = ZEROS.get(n);
  if (!z) ZEROS.set(n, (z = Object.freeze(new Array<number>(n).fill(0))));
  return z as number[];
}

/** What an unfilled TLB's maps, index and slots are: one shared empty array (frozen), replaced on the first fill. */
const NONE = Object.freeze([]) as never[];
const EMPTY_I32 = new Int32Array(0);
const EMPTY_F64 = new Float64Array(0);

/** No slot: the end of a hash chain, an empty bucket. */
const NIL = -1;

export class Tlb {
  readonly capacity: number;
  readonly policy: TlbPolicy;
  private readonly lru: boolean;
  private readonly banks: number;
  /** Per-bank eviction and invalidation counts (hits and misses are counted by the banks themselves). */
  private evicted: number[];
  private invalidated: number[];
  /** Per bank: bit s set when the bank holds entries of size index s (lookups probe only those sizes). */
  private readonly sizeMask: number[];
  /** Live entries per bank × size index: lookups skip sizes a bank has none of. */
  private sizeCount: number[];
  /** Live entries by slot (null: free); `pool` keeps each slot's entry object for its next fill. */
  private slots: Array<TlbEntry | null> = NONE;
  private pool: Array<TlbEntry | undefined> = NONE;
  private freeSlots: number[] = NONE;
  /**
   * The tag index: a chained hash over (bank, size index, key). heads[bucket] is the first slot of a chain,
   * chain[slot] the next one, tag[slot] the slot's full tag (bankSize * 2^32 + key), so a probe reads no entry.
   */
  private heads: Int32Array = EMPTY_I32;
  private chain: Int32Array = EMPTY_I32;
  private tag: Float64Array = EMPTY_F64;
  /** The bucket of each slot's tag (where remove unlinks it). */
  private bucketOf: Int32Array = EMPTY_I32;
  private hashShift = 32;
  /**
   * The tag the last probe found absent: a miss's fill (the same tag, as a rule) skips a second probe. Absent
   * stays absent until a fill, which resets it.
   */
  private absent = NaN;
  /**
   * A direct-mapped index over the 4K entries, 2^microShift slots per bank by the low bits of the key: a slot holds
   * null or a live entry (remove clears it), so a key match is a hit without the tag index.
   */
  private micro: Array<TlbEntry | null> = NONE;
  private microShift = 0;
  private microMask = 0;
  private clock = 0;
  /**
   * LRU victims without a scan, and a hit that stays one store (its `used` tick). Every live entry has one
   * record: at its fill, (slot, fill tick) at the end of the fill queue (so the queue is in tick order); an entry
   * found hit since its fill moves to the heap, keyed by its last use. The least recently used entry is the
   * earlier of the queue's first valid record and the heap's (a record is valid while its entry's `used` is still
   * the record's tick: every other entry has a later tick than its own record). Entries never hit, a miss-heavy
   * load's, leave through the queue at O(1); a hit costs at most one heap push, when its entry comes up.
   */
  private fillSlot: Int32Array = EMPTY_I32;
  private fillTick: Float64Array = EMPTY_F64;
  private fillHead = 0;
  private fillTail = 0;
  private heapUsed: Float64Array = EMPTY_F64;
  private heapSlot: Int32Array = EMPTY_I32;
  private heapFill: Float64Array = EMPTY_F64;
  private heapSize = 0;
  private rr = 0;
  private live = 0;

  constructor(capacity: number, policy: TlbPolicy, banks: number) {
    this.capacity = capacity;
    this.policy = policy;
    this.lru = policy === 'lru';
    this.banks = banks;
    this.sizeMask = new Array<number>(banks).fill(0);
    // An idle SMMU's TLB holds no arrays of its own: the counters are allocated with the index, on the first fill.
    this.sizeCount = zeros(banks * 4);
    this.evicted = zeros(banks);
    this.invalidated = zeros(banks);
  }

  /** Index and slots on the first fill. */
  private allocate(): void {
    const n = this.capacity;
    this.sizeCount = new Array<number>(this.banks * 4).fill(0);
    this.evicted = new Array<number>(this.banks).fill(0);
    this.invalidated = new Array<number>(this.banks).fill(0);
    this.slots = new Array<TlbEntry | null>(n).fill(null);
    if (this.pool.length !== n) this.pool = new Array<TlbEntry | undefined>(n).fill(undefined);
    // Twice as many buckets as slots (a power of two): chains of about one.
    const bits = Math.max(1, Math.ceil(Math.log2(2 * n)));
    this.hashShift = 32 - bits;
    this.heads = new Int32Array(1 << bits).fill(NIL);
    this.chain = new Int32Array(n);
    this.tag = new Float64Array(n);
    this.bucketOf = new Int32Array(n);
    // As many slots per bank as the TLB has entries (a power of two, at most 256): room for a whole bank's set.
    this.microShift = Math.min(8, Math.ceil(Math.log2(n)));
    this.microMask = (1 << this.microShift) - 1;
    this.micro = new Array<TlbEntry | null>(this.banks << this.microShift).fill(null);
    if (this.lru) {
      // Twice the entries: the queue is compacted when full (a fill's record per live entry at most remains).
      const q = 1 << Math.ceil(Math.log2(2 * n));
      this.fillSlot = new Int32Array(q);
      this.fillTick = new Float64Array(q);
      this.heapUsed = new Float64Array(2 * n);
      this.heapSlot = new Int32Array(2 * n);
      this.heapFill = new Float64Array(2 * n);
    }
    this.freeSlots = [];
    for (let i = n - 1; i >= 0; i--) this.freeSlots.push(i);
  }

  get size(): number {
    return this.live;
  }

  get evictions(): readonly number[] {
    return this.evicted;
  }

  get invalidations(): readonly number[] {
    return this.invalidated;
  }

  /** The bucket of a tag: multiplicative hashing of the key and the bank × size index, top bits. */
  private bucket(bankSize: number, key: number): number {
    return Math.imul(key ^ Math.imul(bankSize, 0x27d4eb2f), 0x9e3779b1) >>> this.hashShift;
  }

  /** The slot holding (bank × size index, key), NIL when none. */
  private find(bankSize: number, key: number): number {
    const t = bankSize * 4294967296 + (key >>> 0);
    let s = this.live === 0 ? NIL : this.heads[this.bucket(bankSize, key)]!;
    while (s !== NIL && this.tag[s] !== t) s = this.chain[s]!;
    if (s === NIL) this.absent = t;
    return s;
  }

  /** The entry translating va for (bank, asid), null on a miss, MULTI_HIT when more than one matches. */
  lookup(bank: number, asid: number, va: number): TlbEntry | null | typeof MULTI_HIT {
    if (this.sizeMask[bank] === 1) {
      // The common case, a bank holding only 4K entries: the direct-mapped index, else the tag index.
      const key = (asid << 20) | (va >>> 12);
      const slot = (bank << this.microShift) | (key & this.microMask);
      let e = this.micro[slot]!;
      if (e === null || e.key !== key) {
        const s = this.find(bank * 4, key);
        if (s === NIL) return null;
        this.micro[slot] = e = this.slots[s]!;
      }
      // Stamped whatever the policy (only LRU reads it): one store, no branch.
      e.used = ++this.clock;
      return e;
    }
    return this.lookupSizes(bank, asid, va);
  }

  /** Lookup in a bank holding entries of other sizes than 4K (or none): every size in use, multiple hits found. */
  private lookupSizes(bank: number, asid: number, va: number): TlbEntry | null | typeof MULTI_HIT {
    const mask = this.sizeMask[bank]!;
    let found = NIL;
    if (mask !== 0) {
      for (let s = 0; s < 4; s++) {
        if ((mask & (1 << s)) === 0) continue;
        const slot = this.find(bank * 4 + s, (asid << 20) | ((va >>> 12) & VPN_MASK[s]!));
        if (slot !== NIL) {
          if (found !== NIL) return MULTI_HIT;
          found = slot;
        }
      }
    }
    if (found === NIL) return null;
    const e = this.slots[found]!;
    if (this.lru) e.used = ++this.clock;
    return e;
  }

  /**
   * Fills an entry (replacing one with the same tag, evicting by the policy when full) and returns it for the
   * caller to complete (permission and stale-detector fields); null for a TLB of 0 entries, which keeps none.
   * paBase may come as the same 32 bits signed (x | 0): a small integer to V8, which a call passes without making
   * a heap number of it (an unsigned one of 2^31 or more, RAM above 2 GiB, was one more per miss).
   */
  insert(bank: number, asid: number, sizeIdx: number, vaBase: number, size: number, paBase: number, perm: number): TlbEntry | null {
    if (this.capacity === 0) return null;
    if (this.slots.length === 0) this.allocate();
    const key = tlbKey(asid, vaBase, sizeIdx);
    const bankSize = bank * 4 + sizeIdx;
    const t = bankSize * 4294967296 + (key >>> 0);
    const old = t === this.absent ? NIL : this.find(bankSize, key);
    this.absent = NaN;
    if (old !== NIL) this.remove(this.slots[old]!);
    let slot: number;
    if (this.live < this.capacity) slot = this.freeSlots.pop()!;
    else if (this.lru) {
      // A full LRU TLB (every fill of a miss-heavy load): the victim's slot is refilled, without the free list.
      slot = this.oldestFill();
      if (slot === NIL) slot = this.leastRecentlyUsed();
      const victim = this.slots[slot]!;
      this.unlink(victim);
      this.evicted[victim.bank]!++;
    } else {
      this.evict();
      slot = this.freeSlots.pop()!;
    }
    const e = (this.pool[slot] ??= new TlbEntry(slot));
    e.bank = bank;
    e.asid = asid;
    e.key = key;
    e.sizeIdx = sizeIdx;
    e.vaBase = vaBase;
    e.size = size;
    const pa = paBase >>> 0;
    e.paBase = pa;
    e.perm = perm;
    e.offset = pa - vaBase;
    e.ok = 0;
    e.gen = -1;
    this.slots[slot] = e;
    const b = this.bucket(bankSize, key);
    this.tag[slot] = t;
    this.bucketOf[slot] = b;
    this.chain[slot] = this.heads[b]!;
    this.heads[b] = slot;
    e.used = e.filled = ++this.clock;
    if (this.lru) this.queueFill(slot, e.filled);
    this.sizeCount[bankSize]!++;
    this.sizeMask[bank]! |= 1 << sizeIdx;
    this.live++;
    return e;
  }

  /** TLBIALL on a bank (CTX_TLBIALL), or on every bank (GLOBAL_TLBIALL) when bank is undefined. */
  invalidateAll(bank?: number): number {
    return this.invalidateWhere(bank, () => true);
  }

  /** TLBIASID: a bank's entries of one ASID. */
  invalidateAsid(bank: number, asid: number): number {
    return this.invalidateWhere(bank, (e) => e.asid === asid);
  }

  /** TLBIVA: a bank's entries of one ASID covering va (asid null: any ASID, as TLBIVAA). */
  invalidateVa(bank: number, asid: number | null, va: number): number {
    let n = 0;
    for (let s = 0; s < 4; s++) {
      if (this.sizeCount[bank * 4 + s] === 0) continue;
      if (asid !== null) {
        const slot = this.find(bank * 4 + s, tlbKey(asid, va, s));
        if (slot !== NIL) {
          this.remove(this.slots[slot]!);
          n++;
        }
      } else {
        // Any ASID: the entries of this size covering va, oldest fill first (the order decides which slots the
        // next fills reuse).
        const hit = this.slots.filter((e): e is TlbEntry => e !== null && e.bank === bank && e.sizeIdx === s && va >= e.vaBase && va - e.vaBase < e.size);
        hit.sort((a, b) => a.filled - b.filled);
        for (const e of hit) this.remove(e);
        n += hit.length;
      }
    }
    this.countInvalidations(bank, n);
    return n;
  }

  /** Every entry of a bank overlapping [iova, iova+size): a range flush (the gather's iotlb_sync). */
  invalidateRange(bank: number, iova: number, size: number): number {
    // No entry of the bank (a DMA map/unmap loop with no traffic): nothing to scan.
    if (this.sizeMask[bank] === 0) return 0;
    const end = iova + size;
    return this.invalidateWhere(bank, (e) => e.vaBase < end && e.vaBase + e.size > iova);
  }

  /** Every entry and counter gone, as after a reset. */
  clear(): void {
    // Back to an unfilled TLB: shared empty arrays and zero counters until the next fill allocates them again.
    this.slots = NONE;
    this.pool = NONE;
    this.freeSlots = NONE;
    this.micro = NONE;
    this.heads = this.chain = this.bucketOf = this.fillSlot = this.heapSlot = EMPTY_I32;
    this.fillTick = this.heapUsed = this.heapFill = EMPTY_F64;
    this.fillHead = this.fillTail = this.heapSize = 0;
    this.clock = 0;
    this.absent = NaN;
    this.tag = EMPTY_F64;
    this.sizeCount = zeros(this.banks * 4);
    this.sizeMask.fill(0);
    this.evicted = zeros(this.banks);
    this.invalidated = zeros(this.banks);
    this.rr = 0;
    this.live = 0;
  }

  /** Live entries of a bank (for inspection). */
  entries(bank?: number): TlbEntry[] {
    return this.slots.filter((e): e is TlbEntry => e !== null && (bank === undefined || e.bank === bank));
  }

  private invalidateWhere(bank: number | undefined, pred: (e: TlbEntry) => boolean): number {
    let n = 0;
    for (const e of this.slots) {
      if (e !== null && (bank === undefined || e.bank === bank) && pred(e)) {
        this.remove(e);
        this.countInvalidations(e.bank, 1);
        n++;
      }
    }
    return n;
  }

  private countInvalidations(bank: number, n: number): void {
    if (n === 0) return;
    this.invalidated[bank]! += n;
  }

  private evict(): void {
    if (this.policy === 'flush-all') {
      // QEMU's policy: a full TLB is emptied at once.
      for (const e of this.slots) if (e) this.evictOne(e);
      return;
    }
    let victim: number;
    if (this.lru) victim = this.leastRecentlyUsed();
    else {
      victim = this.rr;
      this.rr = (this.rr + 1) % this.capacity;
    }
    this.evictOne(this.slots[victim]!);
  }

  /**
   * leastRecentlyUsed's answer when it is the fill queue's first record, never hit, and older than the heap's valid
   * first record (a miss-heavy load's every eviction), taken off the queue; NIL otherwise, with nothing changed.
   */
  private oldestFill(): number {
    const at = this.fillHead & (this.fillSlot.length - 1);
    if (this.fillHead === this.fillTail) return NIL;
    const slot = this.fillSlot[at]!;
    const tick = this.fillTick[at]!;
    const e = this.slots[slot]!;
    if (e === null || e.filled !== tick || e.used !== tick) return NIL;
    if (this.heapSize !== 0) {
      const h = this.slots[this.heapSlot[0]!]!;
      const used = this.heapUsed[0]!;
      if (h === null || h.filled !== this.heapFill[0] || h.used !== used || used < tick) return NIL;
    }
    this.fillHead++;
    return slot;
  }

  /** The live entry with the smallest `used` (the TLB is full). */
  private leastRecentlyUsed(): number {
    const mask = this.fillSlot.length - 1;
    let queued = NIL;
    let queuedTick = Infinity;
    while (this.fillHead !== this.fillTail) {
      const slot = this.fillSlot[this.fillHead & mask]!;
      const tick = this.fillTick[this.fillHead & mask]!;
      const e = this.slots[slot]!;
      if (e !== null && e.filled === tick) {
        if (e.used === tick) {
          queued = slot;
          queuedTick = tick;
          break;
        }
        // Hit since its fill: from now on ordered by its last use.
        this.pushHeap(e.used, slot, tick);
      }
      this.fillHead++;
    }
    while (this.heapSize !== 0) {
      const used = this.heapUsed[0]!;
      const slot = this.heapSlot[0]!;
      const fill = this.heapFill[0]!;
      const e = this.slots[slot]!;
      if (e !== null && e.filled === fill) {
        if (e.used === used) {
          if (used > queuedTick) break;
          this.popHeap();
          return slot;
        }
        // Hit again since it was queued here: re-keyed by its last use.
        this.popHeap();
        this.pushHeap(e.used, slot, fill);
      } else this.popHeap();
    }
    this.fillHead++;
    return queued;
  }

  /** A fill's record; a full queue first drops the records of entries gone or moved to the heap. */
  private queueFill(slot: number, tick: number): void {
    const mask = this.fillSlot.length - 1;
    if (this.fillTail - this.fillHead > mask) {
      let to = this.fillHead;
      for (let i = this.fillHead; i !== this.fillTail; i++) {
        const s = this.fillSlot[i & mask]!;
        const t = this.fillTick[i & mask]!;
        const e = this.slots[s]!;
        if (e === null || e.filled !== t) continue;
        this.fillSlot[to & mask] = s;
        this.fillTick[to & mask] = t;
        to++;
      }
      this.fillTail = to;
    }
    this.fillSlot[this.fillTail & mask] = slot;
    this.fillTick[this.fillTail & mask] = tick;
    this.fillTail++;
  }

  private pushHeap(used: number, slot: number, fill: number): void {
    if (this.heapSize === this.heapUsed.length) this.compactHeap();
    const hu = this.heapUsed;
    let i = this.heapSize++;
    while (i > 0) {
      const p = (i - 1) >>> 1;
      if (hu[p]! <= used) break;
      hu[i] = hu[p]!;
      this.heapSlot[i] = this.heapSlot[p]!;
      this.heapFill[i] = this.heapFill[p]!;
      i = p;
    }
    hu[i] = used;
    this.heapSlot[i] = slot;
    this.heapFill[i] = fill;
  }

  private popHeap(): void {
    const m = --this.heapSize;
    if (m > 0) this.siftDown(0, this.heapUsed[m]!, this.heapSlot[m]!, this.heapFill[m]!);
  }

  /** Places a record at i or below, moving smaller children up. */
  private siftDown(i: number, used: number, slot: number, fill: number): void {
    const hu = this.heapUsed;
    const m = this.heapSize;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= m) break;
      if (c + 1 < m && hu[c + 1]! < hu[c]!) c++;
      if (hu[c]! >= used) break;
      hu[i] = hu[c]!;
      this.heapSlot[i] = this.heapSlot[c]!;
      this.heapFill[i] = this.heapFill[c]!;
      i = c;
    }
    hu[i] = used;
    this.heapSlot[i] = slot;
    this.heapFill[i] = fill;
  }

  /** A full heap keeps only the records of entries still there (one per entry at most), re-heaped. */
  private compactHeap(): void {
    let m = 0;
    for (let i = 0; i < this.heapSize; i++) {
      const e = this.slots[this.heapSlot[i]!]!;
      if (e === null || e.filled !== this.heapFill[i]) continue;
      this.heapUsed[m] = this.heapUsed[i]!;
      this.heapSlot[m] = this.heapSlot[i]!;
      this.heapFill[m++] = this.heapFill[i]!;
    }
    this.heapSize = m;
    for (let i = (m >>> 1) - 1; i >= 0; i--) this.siftDown(i, this.heapUsed[i]!, this.heapSlot[i]!, this.heapFill[i]!);
  }

  private evictOne(e: TlbEntry): void {
    this.remove(e);
    this.evicted[e.bank]!++;
  }

  private remove(e: TlbEntry): void {
    this.unlink(e);
    this.freeSlots.push(e.slot);
  }

  /** An entry out of the index and the live count; its slot is the caller's to free or refill. */
  private unlink(e: TlbEntry): void {
    const slot = e.slot;
    const bankSize = e.bank * 4 + e.sizeIdx;
    // Out of its hash chain.
    const b = this.bucketOf[slot]!;
    let s = this.heads[b]!;
    if (s === slot) this.heads[b] = this.chain[slot]!;
    else {
      while (this.chain[s] !== slot) s = this.chain[s]!;
      this.chain[s] = this.chain[slot]!;
    }
    if (e.sizeIdx === 0) {
      const m = (e.bank << this.microShift) | (e.key & this.microMask);
      if (this.micro[m] === e) this.micro[m] = null;
    }
    if (--this.sizeCount[bankSize]! === 0) this.sizeMask[e.bank]! &= ~(1 << e.sizeIdx);
    this.slots[slot] = null;
    this.live--;
  }
}
