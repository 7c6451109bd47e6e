import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MappingTable } from '../../src/dma/mappings.js';

/** The DMA API's mapping table against a Map (the reference): every answer and the order of values are the same. */

const key = fc.oneof(
  // DMA addresses as the allocator hands them out (page-aligned, top-down), with an offset, physical (direct
  // mode, above 2^31), and odd numbers a table must not confuse.
  fc.nat(0xfffff).map((p) => p * 0x1000),
  fc.tuple(fc.nat(0xff), fc.nat(0xfff)).map(([p, o]) => 0xfff00000 - p * 0x8000 + o),
  fc.nat(0xff).map((p) => 0x80000000 + p * 0x1000),
  fc.constantFrom(0, 1, -1, 2 ** 32, 2 ** 32 + 0x1000, 2 ** 40, 0.5, 0x7fffffff, -0x80000000),
);

type Op =
  | { op: 'set'; key: number; v: number }
  | { op: 'delete'; key: number }
  | { op: 'get'; key: number }
  | { op: 'fill'; from: number; n: number }
  | { op: 'drain'; keep: number }
  | { op: 'iterate'; key: number; del: number; at: number };

const ops: fc.Arbitrary<Op[]> = fc.array(
  fc.oneof(
    { weight: 6, arbitrary: fc.record({ op: fc.constant('set' as const), key, v: fc.nat() }) },
    { weight: 4, arbitrary: fc.record({ op: fc.constant('delete' as const), key }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('get' as const), key }) },
    // A driver's burst of buffers, then most of them gone: the table grows, squeezes and lets room go.
    { weight: 1, arbitrary: fc.record({ op: fc.constant('fill' as const), from: fc.nat(0xfff), n: fc.integer({ min: 1, max: 3000 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('drain' as const), keep: fc.nat(9) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('iterate' as const), key, del: key, at: fc.nat(20) }) },
  ),
  { maxLength: 80 },
);

describe('MappingTable (a device\'s live DMA mappings)', () => {
  it('answers get, has, size, delete and set as a Map does, and lists values in the same order', () => {
    fc.assert(
      fc.property(ops, (list) => {
        const t = new MappingTable<{ v: number }>();
        const ref = new Map<number, { v: number }>();
        for (const o of list) {
          if (o.op === 'set') {
            const v = { v: o.v };
            expect(t.set(o.key, v)).toBe(t);
            ref.set(o.key, v);
          } else if (o.op === 'delete') expect(t.delete(o.key)).toBe(ref.delete(o.key));
          else if (o.op === 'get') {
            expect(t.get(o.key)).toBe(ref.get(o.key));
            expect(t.has(o.key)).toBe(ref.has(o.key));
          } else if (o.op === 'fill') {
            for (let i = 0; i < o.n; i++) {
              const k = (o.from + i) * 0x8000;
              const v = { v: i };
              t.set(k, v);
              ref.set(k, v);
            }
          } else if (o.op === 'drain') {
            // Every entry but one in `keep + 1`, in insertion order (as the benchmark's driver unmaps).
            let i = 0;
            for (const k of [...ref.keys()]) if (i++ % (o.keep + 1) !== 0) expect(t.delete(k)).toBe(ref.delete(k));
          } else {
            // Entries added or removed while a listing runs: listed or not as a Map's are.
            const v = { v: -1 };
            const run = <M extends { set(k: number, v: { v: number }): unknown; delete(k: number): unknown; values(): Iterable<{ v: number }> }>(m: M) => {
              const seen: unknown[] = [];
              let i = 0;
              for (const x of m.values()) {
                seen.push(x);
                if (i === 0) m.set(o.key, v);
                if (i++ === o.at) m.delete(o.del);
              }
              return seen;
            };
            const seen = run(t);
            const want = run(ref);
            expect(seen.length).toBe(want.length);
            expect(seen.every((x, i) => x === want[i])).toBe(true);
          }
          expect(t.size).toBe(ref.size);
        }
        expect([...t.values()]).toEqual([...ref.values()]);
        expect([...t.values()].every((v, i) => v === [...ref.values()][i])).toBe(true);
        // The walk without a generator (slots, valueAt) lists the same values.
        const walked = [];
        for (let e = 0; e < t.slots; e++) if (t.valueAt(e) !== undefined) walked.push(t.valueAt(e));
        expect(walked.every((v, i) => v === [...ref.values()][i]) && walked.length === ref.size).toBe(true);
        for (const k of ref.keys()) expect(t.get(k)).toBe(ref.get(k));
      }),
      { numRuns: 200 },
    );
  });

  it('a listing sees entries removed and added under it as a Map\'s does, also when that squeezes or grows the table', () => {
    for (const [n, drop, adds, dropAt] of [[100, 70, 0, 10], [40, 20, 200, 0], [3000, 2990, 50, 5], [8, 0, 100, 3]] as const) {
      const t = new MappingTable<number>();
      const ref = new Map<number, number>();
      for (const m of [t, ref]) {
        for (let i = 0; i < n; i++) m.set(i * 0x1000, i);
        for (let i = 0; i < drop; i++) m.delete(i * 0x1000);
      }
      const run = (m: MappingTable<number> | Map<number, number>) => {
        const seen: number[] = [];
        for (const v of m.values()) {
          if (seen.length === 0) for (let i = 0; i < dropAt; i++) m.delete((drop + 1 + i) * 0x1000);
          if (seen.length < adds) m.set((n + seen.length) * 0x1000, n + seen.length);
          seen.push(v);
        }
        return seen;
      };
      expect(run(t)).toEqual(run(ref));
      expect([...t.values()]).toEqual([...ref.values()]);
      expect(t.size).toBe(ref.size);
    }
  });
});
