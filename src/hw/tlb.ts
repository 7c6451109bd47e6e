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
  prev: TlbEntry | null = null;
  next: TlbEntry | null = null;
  slot = -1;
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
  ) {}
}

/** Page-number masks per size index (4K, 64K, 1M, 16M) over va >>> 12. */
const VPN_MASK = [0xfffff, 0xffff0, 0xfff00, 0xff000];
const SIZE_OF = [0x1000, 0x10000, 0x100000, 0x1000000];

export function tlbKey(asid: number, va: number, sizeIdx: number): number {
  return (asid << 20) | ((va >>> 12) & VPN_MASK[sizeIdx]!);
}

/** Returned by lookup when two entries match: the hardware raises a multiple-hit fault (MHF). */
export const MULTI_HIT = Symbol('multi-hit');

export class Tlb {
  readonly capacity: number;
  readonly policy: TlbPolicy;
  readonly stats: TlbStats = { hits: 0, misses: 0, evictions: 0, invalidations: 0 };
  readonly bankStats: TlbStats[];
  private readonly maps: Array<Array<Map<number, TlbEntry>>>;
  /** Live entries per bank × size index: lookups skip sizes a bank has none of. */
  private readonly sizeCount: Int32Array;
  private readonly slots: Array<TlbEntry | null>;
  private readonly freeSlots: number[] = [];
  private rr = 0;
  private head: TlbEntry | null = null;
  private tail: TlbEntry | null = null;
  private live = 0;

  constructor(capacity: number, policy: TlbPolicy, banks: number) {
    this.capacity = capacity;
    this.policy = policy;
    this.maps = Array.from({ length: banks }, () => [new Map(), new Map(), new Map(), new Map()]);
    this.sizeCount = new Int32Array(banks * 4);
    this.bankStats = Array.from({ length: banks }, () => ({ hits: 0, misses: 0, evictions: 0, invalidations: 0 }));
    this.slots = new Array(capacity).fill(null);
    for (let i = capacity - 1; i >= 0; i--) this.freeSlots.push(i);
  }

  get size(): number {
    return this.live;
  }

  /** The entry translating va for (bank, asid), null on a miss, MULTI_HIT when more than one matches. */
  lookup(bank: number, asid: number, va: number): TlbEntry | null | typeof MULTI_HIT {
    const maps = this.maps[bank]!;
    const base = bank * 4;
    const sc = this.sizeCount;
    let found: TlbEntry | null = null;
    for (let s = 0; s < 4; s++) {
      if (sc[base + s] === 0) continue;
      const e = maps[s]!.get((asid << 20) | ((va >>> 12) & VPN_MASK[s]!));
      if (e !== undefined) {
        if (found !== null) return MULTI_HIT;
        found = e;
      }
    }
    if (found !== null && this.policy === 'lru' && found !== this.tail) this.touch(found);
    return found;
  }

  insert(e: TlbEntry): void {
    if (this.capacity === 0) return;
    const map = this.maps[e.bank]![e.sizeIdx]!;
    const old = map.get(e.key);
    if (old) this.remove(old);
    if (this.live >= this.capacity) this.evict();
    e.slot = this.freeSlots.pop()!;
    this.slots[e.slot] = e;
    map.set(e.key, e);
    this.sizeCount[e.bank * 4 + e.sizeIdx]!++;
    this.live++;
    if (this.policy === 'lru') this.linkTail(e);
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
    if (bank >= 0) this.bankStats[bank]!.invalidations += n;
    this.stats.invalidations += n;
  }

  private evict(): void {
    if (this.policy === 'flush-all') {
      // QEMU's policy: a full TLB is emptied at once.
      for (const e of this.slots) if (e) this.evictOne(e);
      return;
    }
    let victim: TlbEntry | null;
    if (this.policy === 'lru') victim = this.head;
    else {
      victim = this.slots[this.rr]!;
      this.rr = (this.rr + 1) % this.capacity;
    }
    this.evictOne(victim!);
  }

  private evictOne(e: TlbEntry): void {
    this.remove(e);
    this.stats.evictions++;
    this.bankStats[e.bank]!.evictions++;
  }

  private remove(e: TlbEntry): void {
    this.maps[e.bank]![e.sizeIdx]!.delete(e.key);
    this.sizeCount[e.bank * 4 + e.sizeIdx]!--;
    this.slots[e.slot] = null;
    this.freeSlots.push(e.slot);
    this.live--;
    if (this.policy === 'lru') this.unlink(e);
  }

  private touch(e: TlbEntry): void {
    this.unlink(e);
    this.linkTail(e);
  }

  private linkTail(e: TlbEntry): void {
    e.prev = this.tail;
    e.next = null;
    if (this.tail) this.tail.next = e;
    else this.head = e;
    this.tail = e;
  }

  private unlink(e: TlbEntry): void {
    if (e.prev) e.prev.next = e.next;
    else this.head = e.next;
    if (e.next) e.next.prev = e.prev;
    else this.tail = e.prev;
    e.prev = e.next = null;
  }
}

export { SIZE_OF as TLB_PAGE_SIZES };
