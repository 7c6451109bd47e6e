/**
 * The DMA API keeps the device state its last call found (attached to its default DMA domain) and reuses it while
 * nothing it depended on has changed. Against a twin session whose every DMA call looks the state up afresh (its
 * IOMMU's gen bumped before each call, so no remembered state is trusted), any mix of DMA calls with attach, detach,
 * domain free, mode changes and restores must give the same results, refusals, state and events.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { DmaDirection } from '../../src/dma/dma.js';
import { IommuError } from '../../src/errors.js';
import type { Session } from '../../src/session/session.js';
import { msmSession } from '../support/core.js';

const DEVICES = ['vfe_imgwr', 'rot_src', 'jpegd_src'] as const;
const DIRS: DmaDirection[] = ['to-device', 'from-device', 'bidirectional'];

type Op =
  | { op: 'map'; dev: number; page: number; pages: number; dir: number }
  | { op: 'unmap'; pick: number; wrongSize: boolean }
  | { op: 'sync'; pick: number }
  | { op: 'detach'; dev: number }
  | { op: 'attach-unmanaged'; dev: number }
  | { op: 'attach-other'; dev: number; other: number }
  | { op: 'free'; dev: number }
  | { op: 'mode'; dev: number; direct: boolean }
  | { op: 'restore' };

const dev = fc.integer({ min: 0, max: DEVICES.length - 1 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 10, arbitrary: fc.record({ op: fc.constant('map' as const), dev, page: fc.integer({ min: 0, max: 200 }), pages: fc.integer({ min: 1, max: 9 }), dir: fc.integer({ min: 0, max: 2 }) }) },
  { weight: 6, arbitrary: fc.record({ op: fc.constant('unmap' as const), pick: fc.nat(), wrongSize: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('sync' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('detach' as const), dev }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('attach-unmanaged' as const), dev }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('attach-other' as const), dev, other: dev }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('free' as const), dev }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('mode' as const), dev, direct: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ op: 'restore' as const }) },
);

/** The outcome of a call: its result, or the refusal's code and details. */
function outcome(fn: () => unknown): unknown {
  try {
    return { ok: JSON.parse(JSON.stringify(fn() ?? null)) };
  } catch (e) {
    if (!(e instanceof IommuError)) throw e;
    return { code: e.code, details: e.details };
  }
}

/** One op on a session; `cold`: the twin, whose IOMMU gen moves before every call so no remembered state is used. */
function step(s: Session, o: Op, live: Array<{ device: string; dmaAddr: number; size: number; dir: DmaDirection }>, cold: boolean): unknown {
  const dma = <T>(fn: () => T): T => {
    if (cold) s.iommu.gen++;
    return fn();
  };
  switch (o.op) {
    case 'map': {
      const device = DEVICES[o.dev]!;
      const dir = DIRS[o.dir]!;
      return outcome(() => {
        const m = dma(() => s.dma.map(device, 0x40000000 + o.page * 0x3000, o.pages * 0x1000, dir));
        live.push({ device, dmaAddr: m.dmaAddr, size: m.size, dir });
        return m;
      });
    }
    case 'unmap': {
      if (live.length === 0) return null;
      const m = live[o.pick % live.length]!;
      return outcome(() => {
        const r = dma(() => s.dma.unmap(m.device, m.dmaAddr, o.wrongSize ? m.size + 1 : m.size, m.dir));
        live.splice(live.indexOf(m), 1);
        return r;
      });
    }
    case 'sync': {
      if (live.length === 0) return null;
      const m = live[o.pick % live.length]!;
      return outcome(() => dma(() => s.dma.sync(m.device, m.dmaAddr, m.size, 0, 'cpu')));
    }
    case 'detach': {
      const d = s.iommu.domainOf(DEVICES[o.dev]!);
      return d ? outcome(() => s.iommu.detach(d.id, DEVICES[o.dev]!).id) : null;
    }
    case 'attach-unmanaged':
      return outcome(() => {
        const d = s.iommu.domainAlloc({ for: DEVICES[o.dev]! });
        return s.iommu.attach(d.id, DEVICES[o.dev]!, true).id;
      });
    case 'attach-other': {
      // Another device's DMA domain: refused on this family (one device per DMA domain) unless it is its own.
      const d = s.iommu.domainOf(DEVICES[o.other]!);
      return d ? outcome(() => s.iommu.attach(d.id, DEVICES[o.dev]!, true).id) : null;
    }
    case 'free': {
      const device = DEVICES[o.dev]!;
      const d = s.iommu.domainOf(device);
      if (!d) return null;
      return outcome(() => {
        s.iommu.detach(d.id, device);
        s.iommu.domainFree(d.id);
        if (d.type === 'dma') for (let i = live.length - 1; i >= 0; i--) if (live[i]!.device === device) live.splice(i, 1);
      });
    }
    case 'mode':
      return outcome(() => dma(() => s.dma.configure(DEVICES[o.dev]!, { mode: o.direct ? 'direct' : 'iommu' }).mode));
    case 'restore':
      return null;
  }
}

/** Events without their times (the twins run a moment apart). */
function events(s: Session): unknown[] {
  return s.bus.replay(0).events.map(({ time: _t, ...ev }) => ev);
}

describe('property: the remembered DMA device state', () => {
  it('gives what a fresh lookup gives across attach, detach, domain free, mode changes and restores', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 80, size: 'max' }), (ops) => {
        let hot = msmSession();
        let cold = msmSession();
        const liveHot: Array<{ device: string; dmaAddr: number; size: number; dir: DmaDirection }> = [];
        const liveCold: typeof liveHot = [];
        for (const o of ops) {
          if (o.op === 'restore') {
            const restored = [hot, cold].map((s) => {
              const snap = JSON.parse(JSON.stringify(s.snapshot()));
              s.close();
              const n = msmSession();
              n.restoreSnapshot(snap);
              return n;
            });
            [hot, cold] = restored as [Session, Session];
            continue;
          }
          expect(step(hot, o, liveHot, false)).toEqual(step(cold, o, liveCold, true));
          expect(hot.dma.snapshot()).toEqual(cold.dma.snapshot());
          expect(hot.iommu.snapshot()).toEqual(cold.iommu.snapshot());
        }
        expect(events(hot)).toEqual(events(cold));
        hot.close();
        cold.close();
      }),
      { numRuns: 80 },
    );
  });
});
