/**
 * One SMMU's TLB (IDR.TLBSIZE): leaf translations tagged by bank and ASID, shared by the SMMU's banks.
 * Lookups are one Map.get per page size in use by the bank, so a warm hit costs little more than the Map itself.
 */
export type TlbPolicy = 'lru' | 'round-robin' | 'flush-all';

export interface TlbStats {
  hits: number;
  misses: number;
  evictions: number;
  invalidations: number;
}

export class TlbEntry {
  /** Last use (the TLB's clock): LRU evicts the smallest. */
  used = 0;
  slot = -1;
  /**
   * Permission outcomes precomputed at fill: bit (access * 2 + priv) set when allowed with SCTLR.AFE set, the
   * same six bits from bit 6 up for AFE clear (the only SCTLR field the check reads).
   */
  ok = 0;
  /** Memory generation when the descriptors were last known unchanged (PhysMemory.gen). */
  gen = -1;
  /** paBase - vaBase: an address inside the entry translates to va + offset. */
  readonly offset: number = 0;
  constructor(
    readonly bank: number,
    readonly asid: number,
    readonly key: number,
    readonly sizeIdx: number,
    readonly vaBase: number,
    readonly size: number,
    readonly paBase: number,
    readonly perm: number,
    /** TTBR0 and the versions of the descriptor chunks the entry was filled from: the stale-TLB detector. */
    public ttbr0: number,
    public c1: number,
    public v1: number,
    public c2: number,
    public v2: number,
  ) {
    this.offset = paBase - vaBase;
  }
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

export class Tlb {
  readonly capacity: number;
  readonly policy: TlbPolicy;
  private readonly lru: boolean;
  /** Per-bank eviction and invalidation counts (hits and misses are counted by the banks themselves). */
  private evicted: number[];
  private invalidated: number[];
  /** Per bank: bit s set when the bank holds entries of size index s (lookups probe only those sizes). */
  private readonly sizeMask: number[];
  private clock = 0;
  /** Per bank and size index; empty until the first fill (an idle SMMU holds no maps). */
  private maps: Array<Array<Map<number, TlbEntry>>> = NONE;
  /** maps[bank][0], the 4K entries, held flat for the hit path. */
  private small: Array<Map<number, TlbEntry>> = NONE;
  /**
   * A direct-mapped index over the 4K entries, 2^microShift slots per bank by the low bits of the key: a slot holds
   * null or a live entry (remove clears it), so a key match is a hit without the Map; anything else asks the Map.
   */
  private micro: Array<TlbEntry | null> = NONE;
  private microShift = 0;
  private microMask = 0;
  /** Live entries per bank × size index: lookups skip sizes a bank has none of. */
  private sizeCount: number[];
  private slots: Array<TlbEntry | null> = NONE;
  private freeSlots: number[] = NONE;
  private rr = 0;
  private live = 0;

  constructor(capacity: number, policy: TlbPolicy, banks: number) {
    this.capacity = capacity;
    this.policy = policy;
    this.lru = policy === 'lru';
    this.banks = banks;
    this.sizeMask = new Array<number>(banks).fill(0);
    // An idle SMMU's TLB holds no arrays of its own: the counters are allocated with the maps, on the first fill.
    this.sizeCount = zeros(banks * 4);
    this.evicted = zeros(banks);
    this.invalidated = zeros(banks);
  }

  private readonly banks: number;

  /** Maps and slots on the first fill. */
  private allocate(): void {
    this.maps = Array.from({ length: this.banks }, () => [new Map(), new Map(), new Map(), new Map()]);
    this.small = this.maps.map((m) => m[0]!);
    this.sizeCount = new Array<number>(this.banks * 4).fill(0);
    this.evicted = new Array<number>(this.banks).fill(0);
    this.invalidated = new Array<number>(this.banks).fill(0);
    this.slots = new Array<TlbEntry | null>(this.capacity).fill(null);
    // As many slots per bank as the TLB has entries (a power of two, at most 256): room for a whole bank's set.
    this.microShift = Math.min(8, Math.ceil(Math.log2(this.capacity)));
    this.microMask = (1 << this.microShift) - 1;
    this.micro = new Array<TlbEntry | null>(this.banks << this.microShift).fill(null);
    this.freeSlots = [];
    for (let i = this.capacity - 1; i >= 0; i--) this.freeSlots.push(i);
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

  /** The entry translating va for (bank, asid), null on a miss, MULTI_HIT when more than one matches. */
  lookup(bank: number, asid: number, va: number): TlbEntry | null | typeof MULTI_HIT {
    if (this.sizeMask[bank] === 1) {
      // The common case, a bank holding only 4K entries: the index, else one Map.get.
      const key = (asid << 20) | (va >>> 12);
      const slot = (bank << this.microShift) | (key & this.microMask);
      let e = this.micro[slot]!;
      if (e === null || e.key !== key) {
        const m = this.small[bank]!.get(key);
        if (m === undefined) return null;
        this.micro[slot] = e = m;
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
    let found: TlbEntry | null = null;
    if (mask !== 0) {
      const maps = this.maps[bank]!;
      for (let s = 0; s < 4; s++) {
        if ((mask & (1 << s)) === 0) continue;
        const e = maps[s]!.get((asid << 20) | ((va >>> 12) & VPN_MASK[s]!));
        if (e !== undefined) {
          if (found !== null) return MULTI_HIT;
          found = e;
        }
      }
    }
    if (found !== null && this.lru) found.used = ++this.clock;
    return found;
  }

  insert(e: TlbEntry): void {
    if (this.capacity === 0) return;
    if (this.slots.length === 0) this.allocate();
    const map = this.maps[e.bank]![e.sizeIdx]!;
    const old = map.get(e.key);
    if (old) this.remove(old);
    if (this.live >= this.capacity) this.evict();
    e.slot = this.freeSlots.pop()!;
    this.slots[e.slot] = e;
    map.set(e.key, e);
    this.sizeCount[e.bank * 4 + e.sizeIdx]!++;
    this.sizeMask[e.bank]! |= 1 << e.sizeIdx;
    e.used = ++this.clock;
    this.live++;
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
    const maps = this.maps[bank]!;
    let n = 0;
    for (let s = 0; s < 4; s++) {
      if (this.sizeCount[bank * 4 + s] === 0) continue;
      if (asid !== null) {
        const e = maps[s]!.get(tlbKey(asid, va, s));
        if (e) {
          this.remove(e);
          n++;
        }
      } else {
        for (const e of [...maps[s]!.values()]) {
          if (va >= e.vaBase && va - e.vaBase < e.size) {
            this.remove(e);
            n++;
          }
        }
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
    this.maps = NONE;
    this.small = NONE;
    this.micro = NONE;
    this.slots = NONE;
    this.freeSlots = NONE;
    this.sizeCount = zeros(this.banks * 4);
    this.sizeMask.fill(0);
    this.evicted = zeros(this.banks);
    this.invalidated = zeros(this.banks);
    this.clock = 0;
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
    let victim: TlbEntry | null = null;
    if (this.policy === 'lru') {
      // Exact LRU by timestamp: a scan on eviction keeps the hit path to one store.
      for (const e of this.slots) if (e !== null && (victim === null || e.used < victim.used)) victim = e;
    } else {
      victim = this.slots[this.rr]!;
      this.rr = (this.rr + 1) % this.capacity;
    }
    this.evictOne(victim!);
  }

  private evictOne(e: TlbEntry): void {
    this.remove(e);
    this.evicted[e.bank]!++;
  }

  private remove(e: TlbEntry): void {
    this.maps[e.bank]![e.sizeIdx]!.delete(e.key);
    if (e.sizeIdx === 0) {
      const slot = (e.bank << this.microShift) | (e.key & this.microMask);
      if (this.micro[slot] === e) this.micro[slot] = null;
    }
    if (--this.sizeCount[e.bank * 4 + e.sizeIdx]! === 0) this.sizeMask[e.bank]! &= ~(1 << e.sizeIdx);
    this.slots[e.slot] = null;
    this.freeSlots.push(e.slot);
    this.live--;
  }
}

