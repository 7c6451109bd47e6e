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
  private hashShift = 32;
  /**
   * A direct-mapped index over the 4K entries, 2^microShift slots per bank by the low bits of the key: a slot holds
   * null or a live entry (remove clears it), so a key match is a hit without the tag index.
   */
  private micro: Array<TlbEntry | null> = NONE;
  private microShift = 0;
  private microMask = 0;
  /**
   * LRU order as a doubly linked list over the slots (sentinel: slot `capacity`), least recently used first: a
   * hit or fill moves its slot to the end, the victim is the first. The same victim as the smallest last-use
   * time (every use is a distinct tick), found without a scan. Kept under the LRU policy only.
   */
  private prev: Int32Array = EMPTY_I32;
  private next: Int32Array = EMPTY_I32;
  /** Fills so far: the order TLBIVA-by-any-ASID removes entries of one size in (oldest fill first). */
  private fills = 0;
  private fillSeq: Float64Array = EMPTY_F64;
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
    this.fillSeq = new Float64Array(n);
    // As many slots per bank as the TLB has entries (a power of two, at most 256): room for a whole bank's set.
    this.microShift = Math.min(8, Math.ceil(Math.log2(n)));
    this.microMask = (1 << this.microShift) - 1;
    this.micro = new Array<TlbEntry | null>(this.banks << this.microShift).fill(null);
    if (this.lru) {
      this.prev = new Int32Array(n + 1);
      this.next = new Int32Array(n + 1);
      this.prev[n] = this.next[n] = n;
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
    if (this.live === 0) return NIL;
    const t = bankSize * 4294967296 + (key >>> 0);
    let s = this.heads[this.bucket(bankSize, key)]!;
    while (s !== NIL && this.tag[s] !== t) s = this.chain[s]!;
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
      if (this.lru) this.touch(e.slot);
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
    if (this.lru) this.touch(found);
    return this.slots[found]!;
  }

  /** LRU: the slot becomes the most recently used (the end of the list). */
  private touch(s: number): void {
    const prev = this.prev;
    const end = this.capacity;
    const last = prev[end]!;
    if (last === s) return;
    const next = this.next;
    const p = prev[s]!;
    const n = next[s]!;
    next[p] = n;
    prev[n] = p;
    prev[s] = last;
    next[s] = end;
    next[last] = s;
    prev[end] = s;
  }

  /**
   * Fills an entry (replacing one with the same tag, evicting by the policy when full) and returns it for the
   * caller to complete (permission and stale-detector fields); null for a TLB of 0 entries, which keeps none.
   */
  insert(bank: number, asid: number, sizeIdx: number, vaBase: number, size: number, paBase: number, perm: number): TlbEntry | null {
    if (this.capacity === 0) return null;
    if (this.slots.length === 0) this.allocate();
    const key = tlbKey(asid, vaBase, sizeIdx);
    const bankSize = bank * 4 + sizeIdx;
    const old = this.find(bankSize, key);
    if (old !== NIL) this.remove(this.slots[old]!);
    if (this.live >= this.capacity) this.evict();
    const slot = this.freeSlots.pop()!;
    const e = (this.pool[slot] ??= new TlbEntry(slot));
    e.bank = bank;
    e.asid = asid;
    e.key = key;
    e.sizeIdx = sizeIdx;
    e.vaBase = vaBase;
    e.size = size;
    e.paBase = paBase;
    e.perm = perm;
    e.offset = paBase - vaBase;
    e.ok = 0;
    e.gen = -1;
    this.slots[slot] = e;
    const b = this.bucket(bankSize, key);
    this.tag[slot] = bankSize * 4294967296 + (key >>> 0);
    this.chain[slot] = this.heads[b]!;
    this.heads[b] = slot;
    this.fillSeq[slot] = ++this.fills;
    if (this.lru) {
      const prev = this.prev;
      const end = this.capacity;
      const last = prev[end]!;
      prev[slot] = last;
      this.next[slot] = end;
      this.next[last] = slot;
      prev[end] = slot;
    }
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
        hit.sort((a, b) => this.fillSeq[a.slot]! - this.fillSeq[b.slot]!);
        for (const e of hit) this.remove(e);
        n += hit.length;
      }
    }
    this.countInvalidations(bank, n);
    return n;
  }

  /** Every entry of a bank overlapping [iova, iova+size): a range flush (the gather's iotlb_sync). */
  invalidateRange(bank: number, iova: number, size: number): number {
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
    this.heads = this.chain = this.prev = this.next = EMPTY_I32;
    this.tag = this.fillSeq = EMPTY_F64;
    this.sizeCount = zeros(this.banks * 4);
    this.sizeMask.fill(0);
    this.evicted = zeros(this.banks);
    this.invalidated = zeros(this.banks);
    this.fills = 0;
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
    if (this.lru) victim = this.next[this.capacity]!;
    else {
      victim = this.rr;
      this.rr = (this.rr + 1) % this.capacity;
    }
    this.evictOne(this.slots[victim]!);
  }

  private evictOne(e: TlbEntry): void {
    this.remove(e);
    this.evicted[e.bank]!++;
  }

  private remove(e: TlbEntry): void {
    const slot = e.slot;
    const bankSize = e.bank * 4 + e.sizeIdx;
    // Out of its hash chain.
    const b = this.bucket(bankSize, e.key);
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
    if (this.lru) {
      const p = this.prev[slot]!;
      const n = this.next[slot]!;
      this.next[p] = n;
      this.prev[n] = p;
    }
    if (--this.sizeCount[bankSize]! === 0) this.sizeMask[e.bank]! &= ~(1 << e.sizeIdx);
    this.slots[slot] = null;
    this.freeSlots.push(slot);
    this.live--;
  }
}
