import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IovaAllocator } from '../../src/dma/iova.js';
import { ACCESS_READ, ACCESS_WRITE } from '../../src/hw/context.js';
import type { EventOf, IommuEvent } from '../../src/events/types.js';
import { codeOf, msmSession } from '../support/core.js';
import { IommuError } from '../../src/errors.js';

function detailsOf(fn: () => unknown): Record<string, unknown> {
  try {
    fn();
  } catch (e) {
    if (e instanceof IommuError) return { code: e.code, ...e.details };
    throw e;
  }
  throw new Error('expected an IommuError');
}

describe('IOVA allocator (alloc_iova, pinned)', () => {
  it('scripted sequence: exact IOVAs, size alignment, top-down, rcache reuse, page 0 never used', () => {
    const a = new IovaAllocator();
    expect(a.alloc(IovaAllocator.pagesFor(0x2000)).toString(16)).toBe('ffffe000');
    expect(a.alloc(IovaAllocator.pagesFor(0x3000)).toString(16)).toBe('ffff8000'); // 3 pages → 4, aligned to 4
    expect(a.alloc(IovaAllocator.pagesFor(0x1000)).toString(16)).toBe('ffffd000'); // fills the gap below the first
    expect(a.alloc(IovaAllocator.pagesFor(40 * 0x1000)).toString(16)).toBe('fffc0000'); // 40 pages, aligned to 64
    a.free(0xffff8000);
    expect(a.alloc(4).toString(16)).toBe('ffff8000'); // the freed range is reused first
    const small = new IovaAllocator(0x3fff); // 4 pages: pfn 1..3 usable
    expect(small.alloc(2).toString(16)).toBe('2000');
    expect(small.alloc(1).toString(16)).toBe('1000');
    expect(codeOf(() => small.alloc(1))).toBe('NO_SPACE');
  });

  it('property: random alloc/free never overlaps, stays below the limit and above page 0, frees are reusable', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.integer({ min: 1, max: 80 }), fc.constant(-1)), { minLength: 50, maxLength: 300 }), (ops) => {
        const a = new IovaAllocator(0x3fffff); // 1024 pages
        const live: Array<[number, number]> = [];
        for (const op of ops) {
          if (op < 0) {
            const x = live.splice(Math.floor(live.length / 2), 1)[0];
            if (x) a.free(x[0] * 4096);
            continue;
          }
          const pages = IovaAllocator.pagesFor(op * 4096);
          let iova: number;
          try {
            iova = a.alloc(pages);
          } catch {
            // Only refused when no aligned gap exists among the live ranges.
            continue;
          }
          const lo = iova / 4096;
          expect(lo).toBeGreaterThanOrEqual(1);
          expect(lo + pages - 1).toBeLessThanOrEqual(0x3ff);
          expect(lo % 2 ** Math.ceil(Math.log2(pages))).toBe(0);
          for (const [l, n] of live) expect(lo + pages <= l || l + n <= lo).toBe(true);
          live.push([lo, pages]);
        }
        for (const [l] of live.splice(0)) a.free(l * 4096);
        expect(a.alloc(512)).toBe(512 * 4096); // everything freed: the top half is free again
      }),
      { numRuns: 200, seed: 3 },
    );
  });
});

describe('DMA API', () => {
  it('map_single: default DMA domain, exact dmaAddr, prot by direction; device writes reach the CPU side', () => {
    const s = msmSession();
    const m = s.dma.map('vfe_imgwr', 0x40000010, 0x20, 'from-device');
    expect(m.dmaAddr.toString(16)).toBe('fffff010');
    const d = s.iommu.domainOf('vfe_imgwr')!;
    expect(d.type).toBe('dma');
    expect(s.iommu.iovaToPhys(d.id, 0xfffff010)).toMatchObject({ paddr: 0x40000010, prot: 3 });
    const { smmu, bank } = s.soc.device('vfe_imgwr');
    expect(smmu.transfer(bank, { iova: m.dmaAddr, access: ACCESS_WRITE, priv: false, mid: 2, size: 0, data: new Uint8Array([9, 8, 7]) }).outcome).toBe('ok');
    expect([...s.soc.mem.readBytes(0x40000010, 3)]).toEqual([9, 8, 7]);
    // to-device is read-only for the device: a write faults (permission).
    const r = s.dma.map('vfe_imgwr', 0x40100000, 0x1000, 'to-device');
    expect(smmu.transfer(bank, { iova: r.dmaAddr, access: ACCESS_WRITE, priv: false, mid: 2, size: 4 })).toMatchObject({ outcome: 'fault', fault: { kind: 'permission' } });
    expect(smmu.transfer(bank, { iova: r.dmaAddr, access: ACCESS_READ, priv: false, mid: 2, size: 4 }).outcome).toBe('ok');
  });

  it('map_sg lays segments out contiguously in IOVA space', () => {
    const s = msmSession();
    const m = s.dma.mapSg('mdp_vg1', [{ paddr: 0x40010000, size: 0x1000 }, { paddr: 0x40030200, size: 0x1000 }, { paddr: 0x40050000, size: 0x3000 }], 'to-device');
    // 1 + 2 + 3 pages = 6 → rounded to 8, aligned to 8.
    expect(m.segments.map((x) => x.dmaAddr.toString(16))).toEqual(['ffff8000', 'ffff9200', 'ffffb000']);
    const d = s.iommu.domainOf('mdp_vg1')!;
    expect(s.iommu.iovaToPhys(d.id, 0xffff9200).paddr).toBe(0x40030200);
    expect(s.iommu.iovaToPhys(d.id, 0xffffd000).paddr).toBe(0x40052000);
    s.dma.unmap('mdp_vg1', m.dmaAddr, 0x5000, 'to-device');
    expect(codeOf(() => s.iommu.iovaToPhys(d.id, 0xffff8000))).toBe('NOT_MAPPED');
  });

  it('every DMA-debug check fires, with a dma-debug event, and changes nothing', () => {
    const s = msmSession();
    const events: EventOf<'dma-debug'>[] = [];
    s.bus.subscribe((e) => e.type === 'dma-debug' && events.push(e));
    const m = s.dma.map('rot_src', 0x40000000, 0x2000, 'to-device');
    expect(detailsOf(() => s.dma.unmap('rot_src', m.dmaAddr + 0x1000, 0x1000, 'to-device'))).toMatchObject({ code: 'DMA_DEBUG', check: 'unknown-handle' });
    expect(detailsOf(() => s.dma.unmap('rot_src', m.dmaAddr, 0x1000, 'to-device'))).toMatchObject({ check: 'size-mismatch' });
    expect(detailsOf(() => s.dma.unmap('rot_src', m.dmaAddr, 0x2000, 'from-device'))).toMatchObject({ check: 'direction-mismatch' });
    expect(detailsOf(() => s.dma.sync('rot_src', m.dmaAddr, 0x1000, 0x1800, 'cpu'))).toMatchObject({ check: 'sync-outside-mapping' });
    expect(detailsOf(() => s.dma.sync('rot_src', m.dmaAddr, 0x1000, 0, 'cpu', 'bidirectional'))).toMatchObject({ check: 'direction-mismatch' });
    expect(detailsOf(() => s.dma.map('rot_dst', 0x40001000, 0x1000, 'from-device'))).toMatchObject({ check: 'overlapping-mapping' });
    // Not triggered: a partial sync inside, two readers of one buffer, the right unmap.
    expect(s.dma.sync('rot_src', m.dmaAddr, 0x800, 0x1000, 'device').dmaAddr).toBe(m.dmaAddr);
    const m2 = s.dma.map('rot_dst', 0x40001000, 0x1000, 'to-device');
    s.dma.unmap('rot_src', m.dmaAddr, 0x2000, 'to-device');
    expect(detailsOf(() => s.dma.unmap('rot_src', m.dmaAddr, 0x2000, 'to-device'))).toMatchObject({ check: 'unknown-handle' });
    expect(events.map((e) => e.check)).toEqual(['unknown-handle', 'size-mismatch', 'direction-mismatch', 'sync-outside-mapping', 'direction-mismatch', 'overlapping-mapping', 'unknown-handle']);
    // A leak at detach is reported, not refused.
    const dom = s.iommu.domainOf('rot_dst')!;
    s.iommu.detach(dom.id, 'rot_dst');
    expect(events.at(-1)).toMatchObject({ type: 'dma-debug', check: 'leak', device: 'rot_dst', dmaAddr: '0x' + m2.dmaAddr.toString(16) });
  });

  it('DOMAIN_TYPE both ways', () => {
    const s = msmSession();
    const d = s.iommu.domainAlloc();
    s.iommu.attach(d.id, 'jpegd_src');
    expect(codeOf(() => s.dma.map('jpegd_src', 0x40000000, 0x1000, 'to-device'))).toBe('DOMAIN_TYPE');
    s.dma.map('jpegd_dst', 0x40000000, 0x1000, 'to-device');
    const dma = s.iommu.domainOf('jpegd_dst')!;
    expect(codeOf(() => s.iommu.map(dma.id, 0x1000, 0x40000000, 0x1000, 1))).toBe('DOMAIN_TYPE');
    expect(codeOf(() => s.iommu.attach(dma.id, 'vpe_src'))).toBe('DOMAIN_TYPE');
  });

  it('deferred (flush queue): the IOVA is not reused and the TLB entry lives until the queue flushes', () => {
    const s = msmSession();
    s.dma.configure('vpe_src', { flushPolicy: 'deferred' });
    const m = s.dma.map('vpe_src', 0x40000000, 0x1000, 'bidirectional');
    const { smmu, bank } = s.soc.device('vpe_src');
    smmu.transfer(bank, { iova: m.dmaAddr, access: ACCESS_READ, priv: false, mid: 0, size: 4 });
    s.dma.unmap('vpe_src', m.dmaAddr, 0x1000, 'bidirectional');
    const again = s.dma.map('vpe_src', 0x40100000, 0x1000, 'bidirectional');
    expect(again.dmaAddr).not.toBe(m.dmaAddr);
    expect(smmu.transfer(bank, { iova: m.dmaAddr, access: ACCESS_READ, priv: false, mid: 0, size: 4 })).toMatchObject({ outcome: 'ok', stale: true });
    s.dma.flushQueue(s.dma.state('vpe_src'));
    expect(smmu.transfer(bank, { iova: m.dmaAddr, access: ACCESS_READ, priv: false, mid: 0, size: 4 }).outcome).toBe('fault');
    expect(s.dma.map('vpe_src', 0x40200000, 0x1000, 'bidirectional').dmaAddr).toBe(m.dmaAddr);
  });
});

describe('buffers and pools', () => {
  it('priority order, alignment to the largest page size, coalescing, page-table pool never handed out, NO_SPACE', () => {
    const s = msmSession();
    const a = s.pools.alloc(0x3000);
    expect(a).toEqual({ paddr: 0x38000000, size: 0x3000, pool: 'smi' }); // SMI first (priority 1)
    const b = s.pools.alloc(0x100000);
    expect(b.paddr).toBe(0x38100000); // 1 MiB aligned
    const c = s.pools.alloc(0x1001);
    expect(c).toEqual({ paddr: 0x38003000, size: 0x2000, pool: 'smi' });
    expect(s.pools.alloc(0x1000, undefined, 0x10000).paddr).toBe(0x38010000);
    s.pools.free(a.paddr);
    s.pools.free(c.paddr);
    expect(s.pools.alloc(0x5000).paddr).toBe(0x38000000); // coalesced
    const big = s.pools.alloc(0x1f000000, ['ebi1']);
    expect(big).toEqual({ paddr: 0x40000000, size: 0x1f000000, pool: 'ebi1' });
    expect(codeOf(() => s.pools.alloc(0x1000, ['ebi1']))).toBe('NO_SPACE'); // the top 16 MiB is the page-table pool
    expect(codeOf(() => s.pools.alloc(0x1000, ['nope']))).toBe('NOT_FOUND');
    expect(codeOf(() => s.pools.alloc(0x1000, undefined, 0x1800))).toBe('BAD_REQUEST');
  });

  it('new buffers read as zeros', () => {
    const s = msmSession();
    const a = s.pools.alloc(0x1000);
    s.soc.mem.writeBytes(a.paddr, new Uint8Array([1, 2, 3]));
    s.pools.free(a.paddr);
    const b = s.pools.alloc(0x1000);
    expect(b.paddr).toBe(a.paddr);
    expect([...s.soc.mem.readBytes(b.paddr, 3)]).toEqual([0, 0, 0]);
  });

  it('a write that faults half way leaves memory unchanged; peers on one domain see each other\'s writes', () => {
    const s = msmSession();
    const d = s.iommu.domainAlloc();
    s.iommu.attach(d.id, 'vfe_imgwr');
    s.iommu.attach(d.id, 'mdp_vg1');
    s.iommu.map(d.id, 0x10000000, 0x40000000, 0x1000, 3);
    const vfe = s.soc.device('vfe_imgwr');
    const data = new Uint8Array(0x1800).fill(0xab);
    expect(vfe.smmu.transfer(vfe.bank, { iova: 0x10000800, access: ACCESS_WRITE, priv: false, mid: 2, size: 0, data }).outcome).toBe('fault');
    expect(s.soc.mem.readBytes(0x40000800, 0x800).every((x) => x === 0)).toBe(true);
    expect(vfe.smmu.transfer(vfe.bank, { iova: 0x10000100, access: ACCESS_WRITE, priv: false, mid: 2, size: 0, data: new Uint8Array([5, 6]) }).outcome).toBe('ok');
    const mdp = s.soc.device('mdp_vg1');
    const r = mdp.smmu.transfer(mdp.bank, { iova: 0x10000100, access: ACCESS_READ, priv: false, mid: 0, size: 2 });
    expect(r.outcome === 'ok' && [...r.data!]).toEqual([5, 6]);
  });
});

describe('every DMA, buffer and memory mutation is an event naming its actor', () => {
  it('buffer alloc/free, memory write, dma config/map/sync/unmap', () => {
    const s = msmSession();
    const events: IommuEvent[] = [];
    s.bus.subscribe((e) => events.push(e));
    const who = { role: 'operator' as const, label: 'rig' };
    const b = s.run(who, { op: 'buffer-alloc', size: 0x2000 }).result as { paddr: number };
    s.run(who, { op: 'memory-write', paddr: b.paddr, data: Buffer.from('hi').toString('base64') });
    s.run(who, { op: 'dma-config', device: 'vpe_dst', flushPolicy: 'deferred' });
    s.run(who, { op: 'dma-map', device: 'vpe_dst', paddr: b.paddr, size: 0x2000, dir: 'to-device' });
    s.run(who, { op: 'dma-sync', device: 'vpe_dst', dmaAddr: 0xffffe000, size: 16, offset: 16, for: 'cpu' });
    s.run(who, { op: 'dma-unmap', device: 'vpe_dst', dmaAddr: 0xffffe000, size: 0x2000, dir: 'to-device' });
    s.run(who, { op: 'buffer-free', paddr: b.paddr });
    const mine = events.filter((e): e is EventOf<'buffer' | 'memory' | 'dma'> => ['buffer', 'memory', 'dma'].includes(e.type));
    expect(mine.map((e) => `${e.type}:${e.action}`)).toEqual(['buffer:alloc', 'memory:write', 'dma:config', 'dma:map', 'dma:sync', 'dma:unmap', 'buffer:free']);
    expect(mine.every((e) => e.by?.label === 'rig')).toBe(true);
    expect(mine[3]).toMatchObject({ device: 'vpe_dst', dmaAddr: '0xffffe000', size: 0x2000, dir: 'to-device' });
    expect(mine[4]).toMatchObject({ dmaAddr: '0xffffe010', size: 16, for: 'cpu' });
  });
});
