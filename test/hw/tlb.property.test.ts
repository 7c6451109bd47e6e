import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MULTI_HIT, Tlb, type TlbEntry, type TlbPolicy } from '../../src/hw/tlb.js';

const SIZES = [0x1000, 0x10000, 0x100000, 0x1000000];

/**
 * The TLB as HARDWARE.md describes it, kept as a plain list: entries tagged by bank and ASID; a lookup matches
 * every entry covering the address (two: a multiple hit); LRU evicts the entry used longest ago; round-robin
 * takes slots in turn (a new entry goes into the slot freed last, or the lowest never used); flush-all empties
 * a full TLB.
 */
class RefTlb {
  slots: Array<{ bank: number; asid: number; vaBase: number; size: number; used: number; seq: number } | null>;
  seq = 0;
  free: number[] = [];
  clock = 0;
  rr = 0;
  evictions: number[];
  invalidations: number[];

  constructor(
    readonly capacity: number,
    readonly policy: TlbPolicy,
    banks: number,
  ) {
    this.slots = new Array(capacity).fill(null);
    for (let i = capacity - 1; i >= 0; i--) this.free.push(i);
    this.evictions = new Array(banks).fill(0);
    this.invalidations = new Array(banks).fill(0);
  }

  get size(): number {
    return this.slots.filter((e) => e !== null).length;
  }

  private matches(bank: number, asid: number, va: number) {
    return this.slots.filter((e) => e !== null && e.bank === bank && e.asid === asid && va >= e.vaBase && va - e.vaBase < e.size);
  }

  lookup(bank: number, asid: number, va: number): string | null {
    const m = this.matches(bank, asid, va);
    if (m.length > 1) return 'multi-hit';
    if (m.length === 0) return null;
    m[0]!.used = ++this.clock;
    return `${m[0]!.bank}:${m[0]!.asid}:${m[0]!.vaBase.toString(16)}+${m[0]!.size.toString(16)}`;
  }

  private remove(i: number): void {
    this.slots[i] = null;
    this.free.push(i);
  }

  insert(bank: number, asid: number, vaBase: number, size: number): void {
    if (this.capacity === 0) return;
    const same = this.slots.findIndex((e) => e !== null && e.bank === bank && e.asid === asid && e.vaBase === vaBase && e.size === size);
    if (same >= 0) this.remove(same);
    if (this.size >= this.capacity) {
      if (this.policy === 'flush-all') {
        for (let i = 0; i < this.capacity; i++) {
          this.evictions[this.slots[i]!.bank]!++;
          this.remove(i);
        }
      } else {
        let v = -1;
        if (this.policy === 'lru') {
          for (let i = 0; i < this.capacity; i++) if (v < 0 || this.slots[i]!.used < this.slots[v]!.used) v = i;
        } else {
          v = this.rr;
          this.rr = (this.rr + 1) % this.capacity;
        }
        this.evictions[this.slots[v]!.bank]!++;
        this.remove(v);
      }
    }
    this.slots[this.free.pop()!] = { bank, asid, vaBase, size, used: ++this.clock, seq: ++this.seq };
  }

  /**
   * Removes the entries pred picks: in slot order, or (byFill) smallest page size first and oldest fill first
   * within a size, the order TLBIVA takes them in (it decides which slots later fills reuse).
   */
  invalidate(pred: (e: NonNullable<RefTlb['slots'][number]>) => boolean, byFill = false): number {
    const picked = [...this.slots.keys()].filter((i) => this.slots[i] && pred(this.slots[i]!));
    if (byFill) picked.sort((i, j) => this.slots[i]!.size - this.slots[j]!.size || this.slots[i]!.seq - this.slots[j]!.seq);
    for (const i of picked) {
      this.invalidations[this.slots[i]!.bank]!++;
      this.remove(i);
    }
    return picked.length;
  }
}

type Op =
  | { op: 'fill'; bank: number; asid: number; va: number; sizeIdx: number }
  | { op: 'lookup'; bank: number; asid: number; va: number }
  | { op: 'all'; bank: number | undefined }
  | { op: 'asid'; bank: number; asid: number }
  | { op: 'va'; bank: number; asid: number | null; va: number }
  | { op: 'range'; bank: number; va: number; size: number }
  | { op: 'clear' };

// Mostly 64 pages (lookups find what was filled; keys of the 4K index collide), some of a 32 MiB window, few
// ASIDs: fills collide, evict and overlap across sizes.
const va = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.integer({ min: 0, max: 15 }), fc.integer({ min: 0, max: 0xfff })).map(([page, off]) => page * 0x1000 + off) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0x1ffffff }) },
).map((x) => 0x40000000 + x);
const bank = fc.integer({ min: 0, max: 2 });
const asid = fc.integer({ min: 0, max: 1 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('fill' as const), bank, asid, va, sizeIdx: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }) }) }) },
  { weight: 8, arbitrary: fc.record({ op: fc.constant('lookup' as const), bank, asid, va }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('all' as const), bank: fc.option(bank, { nil: undefined }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('asid' as const), bank, asid }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('va' as const), bank, asid: fc.option(asid, { nil: null }), va }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('range' as const), bank, va, size: fc.integer({ min: 1, max: 0x400000 }) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'clear' as const }) },
);

function name(e: TlbEntry | null | typeof MULTI_HIT): string | null {
  if (e === null) return null;
  if (e === MULTI_HIT) return 'multi-hit';
  return `${e.bank}:${e.asid}:${e.vaBase.toString(16)}+${e.size.toString(16)}`;
}

function refNames(ref: RefTlb): string[] {
  return ref.slots.flatMap((e) => (e ? [`${e.bank}:${e.asid}:${e.vaBase.toString(16)}+${e.size.toString(16)}`] : [])).sort();
}

describe('property: the TLB against a list model', () => {
  for (const policy of ['lru', 'round-robin', 'flush-all'] as const) {
    it(`${policy}: every lookup, eviction and invalidation as the model's (recent fills hit through the 4K index)`, () => {
      fc.assert(
        fc.property(fc.constantFrom(0, 1, 3, 8, 16, 128), fc.array(opArb, { minLength: 1, maxLength: 300, size: 'max' }), (capacity, ops) => {
          const tlb = new Tlb(capacity, policy, 3);
          let ref = new RefTlb(capacity, policy, 3);
          for (const o of ops) {
            if (o.op === 'fill') {
              const size = SIZES[o.sizeIdx]!;
              const vaBase = Math.floor(o.va / size) * size;
              tlb.insert(o.bank, o.asid, o.sizeIdx, vaBase, size, vaBase, 0);
              ref.insert(o.bank, o.asid, vaBase, size);
            } else if (o.op === 'lookup') {
              expect(name(tlb.lookup(o.bank, o.asid, o.va))).toBe(ref.lookup(o.bank, o.asid, o.va));
            } else if (o.op === 'all') {
              expect(tlb.invalidateAll(o.bank)).toBe(ref.invalidate((e) => o.bank === undefined || e.bank === o.bank));
            } else if (o.op === 'asid') {
              expect(tlb.invalidateAsid(o.bank, o.asid)).toBe(ref.invalidate((e) => e.bank === o.bank && e.asid === o.asid));
            } else if (o.op === 'va') {
              const n = ref.invalidate((e) => e.bank === o.bank && (o.asid === null || e.asid === o.asid) && o.va >= e.vaBase && o.va - e.vaBase < e.size, true);
              // TLBIVA by ASID removes the entry of each size whose page holds va: the same set.
              expect(tlb.invalidateVa(o.bank, o.asid, o.va)).toBe(n);
            } else if (o.op === 'clear') {
              // As after a reset: no entries, counters at 0, slots and round-robin from the start.
              tlb.clear();
              ref = new RefTlb(capacity, policy, 3);
            } else {
              expect(tlb.invalidateRange(o.bank, o.va, o.size)).toBe(ref.invalidate((e) => e.bank === o.bank && e.vaBase < o.va + o.size && e.vaBase + e.size > o.va));
            }
            expect(tlb.size).toBe(ref.size);
            // The same entries after every step: each fill evicted the model's victim, each invalidation the same set.
            expect(tlb.entries().map(name).sort()).toEqual(refNames(ref));
          }
          expect([...tlb.evictions]).toEqual(ref.evictions);
          expect([...tlb.invalidations]).toEqual(ref.invalidations);
        }),
        { numRuns: 100 },
      );
    });
  }

  // Mostly misses: 4K pages over 4 × the capacity, lookups that refresh entries between fills, so every fill past
  // the first `capacity` evicts and the victim depends on the whole history of hits; some invalidations (a TLB
  // not full for a while: fills without evictions, entries gone under their bookkeeping).
  for (const policy of ['lru', 'round-robin'] as const) {
    it(`${policy}: under churn the victim of every fill is the model's`, () => {
      fc.assert(
        fc.property(
          fc.constantFrom(1, 2, 8, 32),
          fc.array(fc.tuple(fc.constantFrom('fill', 'fill', 'fill', 'lookup', 'lookup', 'invalidate', 'invalidate'), fc.nat(), fc.integer({ min: 0, max: 1 })), { minLength: 1, maxLength: 500 }),
          (capacity, steps) => {
            const tlb = new Tlb(capacity, policy, 2);
            const ref = new RefTlb(capacity, policy, 2);
            for (const [kind, page, bank] of steps) {
              const va = 0x40000000 + (page % (4 * capacity)) * 0x1000;
              if (kind === 'fill') {
                tlb.insert(bank, 0, 0, va, 0x1000, va, 0);
                ref.insert(bank, 0, va, 0x1000);
                expect(tlb.entries().map(name).sort()).toEqual(refNames(ref));
              } else if (kind === 'lookup') expect(name(tlb.lookup(bank, 0, va))).toBe(ref.lookup(bank, 0, va));
              else expect(tlb.invalidateVa(bank, 0, va)).toBe(ref.invalidate((e) => e.bank === bank && e.vaBase === va, true));
            }
            expect([...tlb.evictions]).toEqual(ref.evictions);
          },
        ),
        { numRuns: 200 },
      );
    });
  }

  it('lru: an entry hit long ago is still the victim after many fills the TLB did not keep', () => {
    // Fills that are invalidated at once leave the TLB below capacity (no eviction) while its bookkeeping of fills
    // grows past twice the capacity; A, hit after its fill and never since, must still be the first to go.
    const tlb = new Tlb(4, 'lru', 1);
    const page = (i: number) => 0x40000000 + i * 0x1000;
    tlb.insert(0, 0, 0, page(0), 0x1000, page(0), 0);
    expect(tlb.lookup(0, 0, page(0))).not.toBeNull();
    for (let i = 0; i < 20; i++) {
      tlb.insert(0, 0, 0, page(100 + i), 0x1000, page(100 + i), 0);
      expect(tlb.invalidateVa(0, 0, page(100 + i))).toBe(1);
    }
    for (const i of [1, 2, 3, 4]) tlb.insert(0, 0, 0, page(i), 0x1000, page(i), 0);
    expect(tlb.entries().map((e) => e.vaBase).sort()).toEqual([page(1), page(2), page(3), page(4)]);
    expect(tlb.evictions).toEqual([1]);
  });
});

describe('Tlb.insert paBase', () => {
  it('takes a physical address unsigned or as the same 32 bits signed', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xfffff }), fc.integer({ min: 0, max: 0xfffff }), (vpn, pfn) => {
        const [va, pa] = [vpn * 0x1000, pfn * 0x1000];
        const a = new Tlb(4, 'lru', 1).insert(0, 0, 0, va, 0x1000, pa, 3)!;
        const b = new Tlb(4, 'lru', 1).insert(0, 0, 0, va, 0x1000, pa | 0, 3)!;
        expect([b.paBase, b.offset]).toEqual([a.paBase, a.offset]);
        expect(a.paBase).toBe(pa);
      }),
    );
  });
});
