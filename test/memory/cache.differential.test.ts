import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { EventBody } from '../../src/events/types.js';
import { TINY } from '../../src/hw/profile.js';
import { CpuCache, type DmaView, type OwnedRange } from '../../src/memory/cache.js';
import { PhysMemory } from '../../src/memory/phys.js';
import { OracleCache } from './cache-oracle.js';

/**
 * The slot-based cache against the Map-based one it replaced (test/memory/cache-oracle.ts), driven by the same
 * random operations on the same RAM: every byte returned, every event, RAM, and every line's state in LRU order
 * (data, dirty, the CPU and device spans, the checks reported) must agree after each step. The window starts one
 * page below a 64 KiB RAM chunk boundary and ranges go up to 4 KiB, so operations span pages and chunks, mix
 * cached, dirty and absent lines, and take both the word path (whole aligned lines) and the byte path.
 */
const R = 0x8000f000;
const SPAN = 0x2000;

type Op =
  | { k: 'load'; a: number; n: number; owner: boolean; skew: number }
  | { k: 'store'; a: number; d: Uint8Array; owner: boolean; skew: number }
  | { k: 'clean' | 'invalidate' | 'flush' | 'dmaInvalidate' | 'discard'; a: number; n: number }
  | { k: 'devread'; dev: string; a: number; n: number }
  | { k: 'devwrite'; dev: string; a: number; d: Uint8Array }
  | { k: 'copy'; from: number; to: number; n: number }
  | { k: 'own'; dev: string; a: number; n: number; dma: number }
  | { k: 'release'; i: number }
  | { k: 'restore' };

const at = fc.integer({ min: 0, max: SPAN - 1 });
// Sizes up to 4 KiB, biased to line multiples at line-aligned offsets (the bulk path) and to small ones.
const size = fc.oneof(fc.integer({ min: 1, max: 0x80 }), fc.integer({ min: 1, max: 0x1000 }), fc.integer({ min: 1, max: 64 }).map((k) => k * 64));
const aligned = fc.integer({ min: 0, max: SPAN / 64 - 1 }).map((k) => k * 64);
const where = fc.oneof(at, aligned);
const bytes = size.chain((n) => fc.uint8Array({ minLength: n, maxLength: n }));
const dev = fc.constantFrom('dev0', 'dev1');
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: fc.constant('load' as const), a: where, n: size, owner: fc.boolean(), skew: fc.constantFrom(0, 0, 1, 2) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('store' as const), a: where, d: bytes, owner: fc.boolean(), skew: fc.constantFrom(0, 0, 1, 3) }) },
  fc.record({ k: fc.constantFrom('clean' as const, 'invalidate' as const, 'flush' as const, 'dmaInvalidate' as const, 'discard' as const), a: where, n: size }),
  { weight: 2, arbitrary: fc.record({ k: fc.constant('devread' as const), dev, a: where, n: size }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('devwrite' as const), dev, a: where, d: bytes }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('copy' as const), from: where, to: where, n: size }) },
  fc.record({ k: fc.constant('own' as const), dev, a: where, n: size, dma: fc.integer({ min: 0x1000, max: 0x100000 }) }),
  fc.record({ k: fc.constant('release' as const), i: fc.nat(3) }),
  fc.record({ k: fc.constant('restore' as const) }),
);

/** The DMA layer as both caches see it: device-owned ranges the operations add and remove. */
class FakeDma implements DmaView {
  ranges: OwnedRange[] = [];
  owned(paddr: number, len: number): OwnedRange[] | null {
    const r = this.ranges.filter((x) => x.paddr < paddr + len && paddr < x.paddr + x.size);
    return r.length ? r : null;
  }
  dmaAddrOf(device: string, paddr: number): number | undefined {
    const r = this.ranges.find((x) => x.device === device && paddr >= x.paddr && paddr < x.paddr + x.size);
    return r && r.dmaAddr + (paddr - r.paddr);
  }
}

/** RAM with bytes in the chunk below the boundary; the chunk above is never written at first (it reads as zero). */
function ram(): PhysMemory {
  const m = new PhysMemory(TINY.memory);
  const b = new Uint8Array(0x1000);
  for (let i = 0; i < b.length; i++) b[i] = (i * 37 + 11) & 0xff;
  m.writeBytes(R, b);
  return m;
}

/** A copy of `d` at byte offset `skew` of a larger buffer: the byte path for unaligned callers' buffers. */
function skewed(d: Uint8Array, skew: number): Uint8Array {
  const b = new Uint8Array(d.length + skew);
  b.set(d, skew);
  return b.subarray(skew);
}

const hexOf = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

describe('property: the slot-based CPU cache agrees with the Map-based one it replaced', () => {
  for (const [ls, lines] of [[32, 5], [64, 3], [32, 96], [64, 200]] as const) {
    it(`lineSize ${ls}, ${lines} lines: bytes, events, RAM and every line in LRU order`, () => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 20, maxLength: 60 }), (ops) => {
          const dma = new FakeDma();
          const evNew: EventBody[] = [];
          const evOld: EventBody[] = [];
          const memNew = ram();
          const memOld = ram();
          const cfg = { lineSize: ls, lines, coherent: ['dev1'] };
          const c = new CpuCache(memNew, cfg, { emit: (e) => evNew.push(e) });
          const o = new OracleCache(memOld, cfg, { emit: (e) => evOld.push(e) });
          c.dma = dma;
          o.dma = dma;
          for (const op of ops) {
            const clip = (a: number, n: number) => Math.min(n, SPAN - a);
            switch (op.k) {
              case 'load': {
                const n = clip(op.a, op.n);
                const got = c.load(R + op.a, n, skewed(new Uint8Array(n), op.skew), op.owner);
                expect(hexOf(got)).toBe(hexOf(o.load(R + op.a, n, undefined, op.owner)));
                break;
              }
              case 'store': {
                const d = op.d.subarray(0, SPAN - op.a);
                c.store(R + op.a, skewed(d, op.skew), op.owner);
                o.store(R + op.a, d, op.owner);
                break;
              }
              case 'devread': {
                const n = clip(op.a, op.n);
                const a = new Uint8Array(n + 3);
                const b = new Uint8Array(n + 3);
                c.deviceRead(op.dev, R + op.a, n, a, 3);
                o.deviceRead(op.dev, R + op.a, n, b, 3);
                expect(hexOf(a)).toBe(hexOf(b));
                break;
              }
              case 'devwrite': {
                const d = op.d.subarray(0, SPAN - op.a);
                c.deviceWrite(op.dev, R + op.a, d);
                o.deviceWrite(op.dev, R + op.a, d);
                break;
              }
              case 'copy': {
                // A bounce copy: a CPU load then a CPU store, exempt from the ownership check.
                const n = Math.min(op.n, SPAN - op.from, SPAN - op.to);
                c.store(R + op.to, c.load(R + op.from, n, undefined, false), false);
                o.store(R + op.to, o.load(R + op.from, n, undefined, false), false);
                break;
              }
              case 'own':
                dma.ranges.push({ device: op.dev, paddr: R + op.a, size: clip(op.a, op.n), dmaAddr: op.dma });
                break;
              case 'release':
                dma.ranges.splice(op.i, 1);
                break;
              case 'restore': {
                const snap = JSON.parse(JSON.stringify(c.snapshot())) as ReturnType<CpuCache['snapshot']>;
                c.restore(snap);
                break;
              }
              case 'dmaInvalidate':
                expect(c.dmaInvalidate(R + op.a, clip(op.a, op.n))).toBe(o.dmaInvalidate(R + op.a, clip(op.a, op.n)));
                break;
              case 'discard':
                c.discard(R + op.a, clip(op.a, op.n));
                o.discard(R + op.a, clip(op.a, op.n));
                break;
              default:
                expect(c[op.k](R + op.a, clip(op.a, op.n))).toBe(o[op.k](R + op.a, clip(op.a, op.n)));
            }
            if (evNew.length !== evOld.length || JSON.stringify(evNew) !== JSON.stringify(evOld)) expect(evNew).toEqual(evOld);
            if (hexOf(memNew.readBytes(R, SPAN)) !== hexOf(memOld.readBytes(R, SPAN))) expect(hexOf(memNew.readBytes(R, SPAN))).toBe(hexOf(memOld.readBytes(R, SPAN)));
            const a = JSON.stringify(c.snapshot());
            const b = JSON.stringify(o.snapshot());
            if (a !== b) expect(JSON.parse(a)).toEqual(JSON.parse(b));
            expect(c.used).toBe(o.used);
            expect(c.entries()).toEqual(o.entries());
          }
        }),
        { numRuns: Number(process.env.CACHE_RUNS ?? 40), seed: Number(process.env.CACHE_SEED ?? 11) },
      );
    });
  }
});
