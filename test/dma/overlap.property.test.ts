import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { DmaDirection } from '../../src/dma/dma.js';
import { IommuError } from '../../src/errors.js';
import { hex } from '../../src/errors.js';
import type { Session } from '../../src/session/session.js';
import { msmSession } from '../support/core.js';

const DEVICES = ['vfe_imgwr', 'rot_src', 'rot_dst', 'jpegd_src'] as const;
const DIRS: DmaDirection[] = ['to-device', 'from-device', 'bidirectional'];

/**
 * What CONFIG_DMA_API_DEBUG's overlap check refuses, by brute force over every live mapping in device order:
 * the first live segment overlapping [paddr, paddr+size) where either mapping lets the device write.
 */
function firstConflict(s: Session, paddr: number, size: number, dir: DmaDirection): Record<string, unknown> | null {
  for (const st of s.dma.devices.values()) {
    for (const m of st.mappings.values()) {
      for (const g of m.segments) {
        if (g.paddr < paddr + size && paddr < g.paddr + g.size && (dir !== 'to-device' || m.dir !== 'to-device')) {
          return { device: st.device, dmaAddr: hex(m.dmaAddr), paddr: hex(g.paddr), size: g.size, dir: m.dir };
        }
      }
    }
  }
  return null;
}

type Op =
  | { op: 'map'; dev: number; segs: Array<{ page: number; off: number; pages: number }>; dir: number }
  | { op: 'unmap'; pick: number }
  | { op: 'direct'; dev: number }
  | { op: 'free'; dev: number }
  | { op: 'restore' };

const seg = fc.record({ page: fc.integer({ min: 0, max: 160 }), off: fc.constantFrom(0, 0x200, 0xf00), pages: fc.integer({ min: 1, max: 6 }) });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 10, arbitrary: fc.record({ op: fc.constant('map' as const), dev: fc.integer({ min: 0, max: 3 }), segs: fc.array(seg, { minLength: 1, maxLength: 3 }), dir: fc.integer({ min: 0, max: 2 }) }) },
  { weight: 6, arbitrary: fc.record({ op: fc.constant('unmap' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('direct' as const), dev: fc.integer({ min: 0, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('free' as const), dev: fc.integer({ min: 0, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('restore' as const) }) },
);

describe('property: the DMA-debug overlap check against a brute-force scan', () => {
  it('a map is refused exactly when a live mapping conflicts, naming the first one in device order', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 100, size: 'max' }), (ops) => {
        let s = msmSession();
        const live: Array<{ device: string; dmaAddr: number; size: number; dir: DmaDirection }> = [];
        for (const o of ops) {
          if (o.op === 'map') {
            const device = DEVICES[o.dev]!;
            const dir = DIRS[o.dir]!;
            const segs = o.segs.map((g) => ({ paddr: 0x40000000 + g.page * 0x1000 + g.off, size: g.pages * 0x1000 - g.off }));
            const want = segs.map((g) => firstConflict(s, g.paddr, g.size, dir)).find((c) => c !== null) ?? null;
            // Direct mode: two readers of one buffer still cannot share a DMA address (the handle).
            const st = s.dma.devices.get(device);
            const sameHandle = want === null && st?.mode === 'direct' && st.mappings.has(segs[0]!.paddr);
            try {
              const m = s.dma.mapSg(device, segs, dir);
              expect(want === null && !sameHandle).toBe(true);
              live.push({ device, dmaAddr: m.dmaAddr, size: m.size, dir });
            } catch (e) {
              if (!(e instanceof IommuError) || e.code !== 'DMA_DEBUG') throw e;
              if (sameHandle) expect(e.details).toEqual({ check: 'overlapping-mapping', paddr: hex(segs[0]!.paddr), dmaAddr: hex(segs[0]!.paddr) });
              else expect(e.details).toEqual({ check: 'overlapping-mapping', paddr: hex(segs.find((g) => firstConflict(s, g.paddr, g.size, dir))!.paddr), other: want });
            }
          } else if (o.op === 'unmap' && live.length > 0) {
            const [m] = live.splice(o.pick % live.length, 1);
            s.dma.unmap(m!.device, m!.dmaAddr, m!.size, m!.dir);
          } else if (o.op === 'direct') {
            // Refused (DEVICE_BUSY) while the device has mappings; otherwise its state is replaced.
            try {
              s.dma.configure(DEVICES[o.dev]!, { mode: 'direct', dmaLimit: 0xffffffff });
            } catch (e) {
              if (!(e instanceof IommuError)) throw e;
            }
          } else if (o.op === 'free') {
            // Freeing the default DMA domain drops the device's leaked mappings from the DMA API.
            const d = s.iommu.domainOf(DEVICES[o.dev]!);
            if (d?.type === 'dma') {
              s.iommu.detach(d.id, DEVICES[o.dev]!);
              s.iommu.domainFree(d.id);
              for (let i = live.length - 1; i >= 0; i--) if (live[i]!.device === DEVICES[o.dev]) live.splice(i, 1);
            }
          } else if (o.op === 'restore') {
            const snap = JSON.parse(JSON.stringify(s.snapshot()));
            s.close();
            s = msmSession();
            s.restoreSnapshot(snap);
          }
        }
        s.close();
      }),
      { numRuns: 60 },
    );
  });

  it('with many mappings live and many unmapped (the index answers, removed segments linger until compacted), refusals match the scan', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ unmap: fc.boolean(), page: fc.integer({ min: 0, max: 80 }), pages: fc.integer({ min: 1, max: 3 }), dir: fc.integer({ min: 0, max: 2 }), pick: fc.nat() }), { minLength: 100, maxLength: 300, size: 'max' }),
        (ops) => {
          const s = msmSession();
          const live: Array<{ dmaAddr: number; size: number; dir: DmaDirection }> = [];
          for (const o of ops) {
            // Unmaps only once the index is in use (16 live), so it holds dead segments when it is asked.
            if (o.unmap && live.length > 16) {
              const [m] = live.splice(o.pick % live.length, 1);
              s.dma.unmap('vfe_imgwr', m!.dmaAddr, m!.size, m!.dir);
              continue;
            }
            const dir = DIRS[o.dir]!;
            const paddr = 0x40000000 + o.page * 0x1000;
            const want = firstConflict(s, paddr, o.pages * 0x1000, dir);
            try {
              const m = s.dma.map('vfe_imgwr', paddr, o.pages * 0x1000, dir);
              expect(want).toBeNull();
              live.push({ dmaAddr: m.dmaAddr, size: m.size, dir });
            } catch (e) {
              if (!(e instanceof IommuError) || e.code !== 'DMA_DEBUG') throw e;
              expect(e.details).toEqual({ check: 'overlapping-mapping', paddr: hex(paddr), other: want });
            }
          }
          s.close();
        },
      ),
      { numRuns: 40 },
    );
  });

  it('with a hundred mappings live (the index answers), the first conflict in device order is named', () => {
    const s = msmSession();
    const a = Array.from({ length: 100 }, (_, i) => s.dma.map(DEVICES[i % 4]!, 0x40000000 + i * 0x3000, 0x2000, i % 3 === 0 ? 'to-device' : 'from-device'));
    // Overlaps mapping 98 (from-device, rot_dst) only; 97 ends before it.
    const at = 0x40000000 + 98 * 0x3000 + 0x1000;
    expect(firstConflict(s, at, 0x1000, 'to-device')).toMatchObject({ device: 'rot_dst' });
    const err = (() => {
      try {
        s.dma.map('vfe_imgwr', at, 0x1000, 'to-device');
      } catch (e) {
        return e as IommuError;
      }
      return null;
    })();
    expect(err?.details).toEqual({ check: 'overlapping-mapping', paddr: hex(at), other: { device: 'rot_dst', dmaAddr: hex(a[98]!.dmaAddr), paddr: hex(at - 0x1000), size: 0x2000, dir: 'from-device' } });
    // Between two buffers, and a reader over a reader: no conflict.
    expect(s.dma.map('vfe_imgwr', 0x40000000 + 98 * 0x3000 + 0x2000, 0x1000, 'from-device').size).toBe(0x1000);
    expect(s.dma.map('vfe_imgwr', 0x40000000 + 96 * 0x3000, 0x1000, 'to-device').size).toBe(0x1000);
  });
});
