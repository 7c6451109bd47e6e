import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IommuError } from '../../src/errors.js';
import { TINY } from '../../src/hw/profile.js';
import type { Command } from '../../src/session/commands.js';
import { Session } from '../../src/session/session.js';

/**
 * A reference model of the CPU cache (API.md v1.1): a list of lines {addr, data, dirty} in LRU order over a RAM
 * array, and the DMA API's maintenance per direction and its bounce copies (CPU copies: a load, then a store),
 * written as plainly as the contract says it. Random CPU, device and DMA operations drive both; after each one RAM,
 * the cached lines and every byte read must agree.
 *
 * The RAM modelled is a bounce pool of two 2 KiB slots, then a window of buffers that straddles a 64 KiB RAM
 * chunk boundary. dev0's DMA mask ends at that boundary, so its maps that cross it are bounced.
 */
const BASE = 0x8000e800;
const POOL = 0x1000;
const WINDOW = 0x2000;
const DEV0_LIMIT = 0x8000ffff;

class Model {
  ram = new Uint8Array(WINDOW);
  lines: Array<{ addr: number; data: Uint8Array; dirty: boolean }> = [];
  /** Live mappings: the buffer at `orig`, its bounce slots at `slot` (null when not bounced). */
  maps: Array<{ dev: string; dmaAddr: number; orig: number; slot: number | null; size: number; dir: string }> = [];
  constructor(
    readonly ls: number,
    readonly cap: number,
  ) {}
  private find(addr: number) {
    return this.lines.findIndex((l) => l.addr === addr);
  }
  private wb(l: { addr: number; data: Uint8Array; dirty: boolean }) {
    this.ram.set(l.data, l.addr);
    l.dirty = false;
  }
  private get(addr: number) {
    const i = this.find(addr);
    if (i >= 0) {
      const [l] = this.lines.splice(i, 1);
      this.lines.push(l!);
      return l!;
    }
    if (this.lines.length >= this.cap) {
      const v = this.lines.shift()!;
      if (v.dirty) this.wb(v);
    }
    const l = { addr, data: this.ram.slice(addr, addr + this.ls), dirty: false };
    this.lines.push(l);
    return l;
  }
  load(a: number, n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const l = this.get(Math.floor((a + i) / this.ls) * this.ls);
      out[i] = l.data[(a + i) % this.ls]!;
    }
    return out;
  }
  store(a: number, d: Uint8Array) {
    for (let i = 0; i < d.length; i++) {
      const l = this.get(Math.floor((a + i) / this.ls) * this.ls);
      l.data[(a + i) % this.ls] = d[i]!;
      l.dirty = true;
    }
  }
  private inRange(a: number, n: number) {
    return this.lines.filter((l) => l.addr + this.ls > a && l.addr < a + n);
  }
  clean(a: number, n: number) {
    for (const l of this.inRange(a, n)) if (l.dirty) this.wb(l);
  }
  invalidate(a: number, n: number) {
    for (const l of this.inRange(a, n)) this.lines.splice(this.lines.indexOf(l), 1);
  }
  flush(a: number, n: number) {
    this.clean(a, n);
    this.invalidate(a, n);
  }
  /** dma_inv_range: a partial line at either end is cleaned first. */
  dmaInv(a: number, n: number) {
    for (const l of this.inRange(a, n)) {
      if (l.addr < a || l.addr + this.ls > a + n) this.flush(l.addr, 1);
      else this.invalidate(l.addr, 1);
    }
  }
  devRead(coherent: boolean, a: number, n: number): Uint8Array {
    const out = this.ram.slice(a, a + n);
    if (coherent) for (let i = 0; i < n; i++) {
      const l = this.lines.find((x) => x.addr === Math.floor((a + i) / this.ls) * this.ls);
      if (l) out[i] = l.data[(a + i) % this.ls]!;
    }
    return out;
  }
  devWrite(coherent: boolean, a: number, d: Uint8Array) {
    this.ram.set(d, a);
    if (coherent) for (let i = 0; i < d.length; i++) {
      const l = this.lines.find((x) => x.addr === Math.floor((a + i) / this.ls) * this.ls);
      if (l) l.data[(a + i) % this.ls] = d[i]!;
    }
  }
  toDevice(coherent: boolean, dir: string, a: number, n: number) {
    if (coherent) return;
    if (dir === 'from-device') this.dmaInv(a, n);
    else this.clean(a, n);
  }
  toCpu(coherent: boolean, dir: string, a: number, n: number) {
    if (!coherent && dir !== 'to-device') this.dmaInv(a, n);
  }
  /** A bounce copy: a CPU load of the whole source, then a CPU store of it. */
  copy(from: number, to: number, n: number) {
    this.store(to, this.load(from, n));
  }
}

type Op =
  | { k: 'load' | 'devread'; a: number; n: number; dev: string }
  | { k: 'store' | 'devwrite'; a: number; d: Uint8Array; dev: string }
  | { k: 'clean' | 'invalidate' | 'flush'; a: number; n: number }
  | { k: 'map'; dev: string; a: number; n: number; dir: 'to-device' | 'from-device' | 'bidirectional' }
  | { k: 'sync'; i: number; off: number; n: number; for: 'cpu' | 'device' }
  | { k: 'unmap'; i: number };

const off = fc.integer({ min: 0, max: WINDOW - 1 });
const len = fc.oneof(fc.integer({ min: 1, max: 0x60 }), fc.integer({ min: 1, max: 0x400 }));
const mapOff = fc.integer({ min: POOL, max: WINDOW - 1 });
const dev = fc.constantFrom('dev0', 'dev1');
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constantFrom('load' as const, 'devread' as const), a: off, n: len, dev }),
  fc.record({ k: fc.constantFrom('store' as const, 'devwrite' as const), a: off, d: fc.uint8Array({ minLength: 1, maxLength: 0x50 }), dev }),
  fc.record({ k: fc.constantFrom('clean' as const, 'invalidate' as const, 'flush' as const), a: off, n: len }),
  fc.record({ k: fc.constant('map' as const), dev, a: mapOff, n: fc.oneof(fc.integer({ min: 1, max: 0x100 }), fc.integer({ min: 0x100, max: 0x900 })), dir: fc.constantFrom('to-device' as const, 'from-device' as const, 'bidirectional' as const) }),
  fc.record({ k: fc.constant('sync' as const), i: fc.nat(4), off: fc.nat(0x900), n: fc.integer({ min: 1, max: 0x400 }), for: fc.constantFrom('cpu' as const, 'device' as const) }),
  fc.record({ k: fc.constant('unmap' as const), i: fc.nat(4) }),
);

/** Byte-for-byte equality, cheap when equal (the deep comparison only to describe a difference). */
function same(got: Uint8Array, want: Uint8Array): void {
  if (!Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength))) {
    expect(Buffer.from(got).toString('hex')).toBe(Buffer.from(want).toString('hex'));
  }
}

const b64 = (d: Uint8Array) => Buffer.from(d).toString('base64');

describe('property: the CPU cache against a reference model (byte for byte)', () => {
  for (const [ls, cap] of [[32, 6], [64, 3], [32, 64], [64, 160]] as const) {
    it(`lineSize ${ls}, ${cap} lines: random CPU, device and DMA operations`, () => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 30, maxLength: 80 }), (ops) => {
          const s = new Session({ id: 'm', name: 'm', profile: TINY, cpuCache: { lineSize: ls, lines: cap, coherent: ['dev1'] }, bounce: { paddr: BASE, size: POOL } });
          const m = new Model(ls, cap);
          const run = (cmd: Command) => s.run(null, cmd).result;
          run({ op: 'dma-config', device: 'dev0', mode: 'direct', dmaLimit: DEV0_LIMIT });
          run({ op: 'dma-config', device: 'dev1', mode: 'direct' });
          for (const op of ops) {
            const coherent = 'dev' in op && op.dev === 'dev1';
            switch (op.k) {
              case 'load': {
                const n = Math.min(op.n, WINDOW - op.a);
                same(run({ op: 'memory-read', paddr: BASE + op.a, size: n }) as Uint8Array, m.load(op.a, n));
                break;
              }
              case 'store': {
                const d = op.d.subarray(0, WINDOW - op.a);
                run({ op: 'memory-write', paddr: BASE + op.a, data: b64(d) });
                m.store(op.a, d);
                break;
              }
              case 'devread': {
                const n = Math.min(op.n, WINDOW - op.a);
                const r = run({ op: 'access', device: op.dev, iova: BASE + op.a, access: 'read', size: n }) as { data: Uint8Array };
                same(r.data, m.devRead(coherent, op.a, n));
                break;
              }
              case 'devwrite': {
                const d = op.d.subarray(0, WINDOW - op.a);
                run({ op: 'access', device: op.dev, iova: BASE + op.a, access: 'write', data: b64(d) });
                m.devWrite(coherent, op.a, d);
                break;
              }
              case 'clean':
              case 'invalidate':
              case 'flush': {
                const n = Math.min(op.n, WINDOW - op.a);
                run({ op: 'cache-maintain', action: op.k, paddr: BASE + op.a, size: n });
                m[op.k](op.a, n);
                break;
              }
              case 'map': {
                const n = Math.min(op.n, WINDOW - op.a);
                let r: { dmaAddr: number; segments: Array<{ bounce?: { paddr: number } | null }> };
                try {
                  r = run({ op: 'dma-map', device: op.dev, paddr: BASE + op.a, size: n, dir: op.dir }) as typeof r;
                } catch (e) {
                  if (!(e instanceof IommuError)) throw e;
                  break; // refused (overlap, no free slots): nothing changed, as the comparison below checks
                }
                const b = r.segments[0]!.bounce ?? undefined;
                expect(b !== undefined).toBe(op.dev === 'dev0' && BASE + op.a + n - 1 > DEV0_LIMIT);
                const x = { dev: op.dev, dmaAddr: r.dmaAddr, orig: op.a, slot: b ? b.paddr - BASE : null, size: n, dir: op.dir };
                m.maps.push(x);
                // swiotlb: copy into the slots (to-device, bidirectional), then maintain what the device reads.
                if (x.slot !== null && op.dir !== 'from-device') m.copy(x.orig, x.slot, n);
                m.toDevice(coherent, op.dir, x.slot ?? x.orig, n);
                break;
              }
              case 'sync': {
                const x = m.maps[op.i];
                if (!x) break;
                const o = op.off % x.size;
                const n = Math.min(op.n, x.size - o);
                run({ op: 'dma-sync', device: x.dev, dmaAddr: x.dmaAddr, offset: o, size: n, for: op.for });
                const at = (x.slot ?? x.orig) + o;
                if (op.for === 'device') {
                  if (x.slot !== null && x.dir !== 'from-device') m.copy(x.orig + o, at, n);
                  m.toDevice(x.dev === 'dev1', x.dir, at, n);
                } else {
                  m.toCpu(x.dev === 'dev1', x.dir, at, n);
                  if (x.slot !== null && x.dir !== 'to-device') m.copy(at, x.orig + o, n);
                }
                break;
              }
              case 'unmap': {
                const x = m.maps[op.i];
                if (!x) break;
                run({ op: 'dma-unmap', device: x.dev, dmaAddr: x.dmaAddr, size: x.size, dir: x.dir as 'to-device' });
                m.maps.splice(op.i, 1);
                m.toCpu(x.dev === 'dev1', x.dir, x.slot ?? x.orig, x.size);
                if (x.slot !== null && x.dir !== 'to-device') m.copy(x.slot, x.orig, x.size);
                break;
              }
            }
            same(s.soc.mem.readBytes(BASE, WINDOW), m.ram);
            const lines = s.cache!.entries().map((e) => `${e.paddr - BASE}:${e.dirty}:${Buffer.from(s.cache!.peek(e.paddr)!.data).toString('hex')}`);
            const want = [...m.lines].sort((a, b) => a.addr - b.addr).map((l) => `${l.addr}:${l.dirty}:${Buffer.from(l.data).toString('hex')}`);
            if (lines.join() !== want.join()) expect(lines).toEqual(want);
          }
          s.close();
        }),
        { numRuns: Number(process.env.CACHE_RUNS ?? 50), seed: Number(process.env.CACHE_SEED ?? 7) },
      );
    });
  }
});
