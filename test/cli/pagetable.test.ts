import { describe, expect, it } from 'vitest';
import { listeningDaemon } from '../support/daemon.js';
import { ctlRunner } from '../support/ctl.js';

const daemon = listeningDaemon();
const { ctl, json } = ctlRunner(daemon.url);

/** `domain pagetable` prints each family's own table shape, from the API's data (issue 15). */
describe('iommuctl domain pagetable per IOMMU family', () => {
  it('gart: the valid entries of the aperture, iova to physical page', async () => {
    const s = await json(['session', 'create', '--profile', 'tegra20']);
    const env = { IOMMUD_SESSION: s.id, IOMMUD_TOKEN: s.token };
    const d = await json(['domain', 'alloc'], env);
    await json(['domain', 'attach', d.id, 'gr2d'], env);
    await json(['domain', 'map', d.id, '0x58000000', '0x100000', '0x2000'], env);
    await json(['domain', 'map', d.id, '0x59fff000', '0x7ffff000', '0x1000'], env);
    const r = await ctl(['domain', 'pagetable', d.id], env);
    expect(r.stdout).toBe(
      [
        'GART aperture 0x58000000 +0x2000000: 8192 entries, 3 valid',
        '  [0] 0x58000000 -> 0x100000 (pte 0x80100000)',
        '  [1] 0x58001000 -> 0x101000 (pte 0x80101000)',
        '  [8191] 0x59fff000 -> 0x7ffff000 (pte 0xfffff000)',
        '',
      ].join('\n'),
    );
    expect(r.code).toBe(0);
    // --json is the API's document as it is.
    expect(await json(['domain', 'pagetable', d.id], env)).toEqual({
      family: 'gart',
      aperture: { base: '0x58000000', size: 0x2000000 },
      entries: [
        { iova: '0x58000000', pte: '0x80100000' },
        { iova: '0x58001000', pte: '0x80101000' },
        { iova: '0x59fff000', pte: '0xfffff000' },
      ],
    });
  }, 60_000);

  it('omap: sections, supersections and large pages with their 16 replicas folded, small pages under their L2 table', async () => {
    const s = await json(['session', 'create', '--profile', 'omap4']);
    const env = { IOMMUD_SESSION: s.id, IOMMUD_TOKEN: s.token };
    const d = await json(['domain', 'alloc', '--for', 'dsp'], env);
    expect(d).toMatchObject({ family: 'omap', ttbr0: '0xbf000000' });
    await json(['domain', 'attach', d.id, 'dsp'], env);
    await json(['domain', 'map', d.id, '0x10000000', '0x80000000', '0x100000'], env); // section
    await json(['domain', 'map', d.id, '0x11000000', '0x81000000', '0x1000000'], env); // supersection
    await json(['domain', 'map', d.id, '0x20000000', '0x82000000', '0x10000'], env); // large page
    await json(['domain', 'map', d.id, '0x20010000', '0x82011000', '0x1000'], env); // small page
    const r = await ctl(['domain', 'pagetable', d.id], env);
    expect(r.stdout).toBe(
      [
        'TTB 0xbf000000',
        'L1[256] 0x80000002 section 1M: 0x10000000 -> 0x80000000',
        'L1[272..287] 0x81040002 ×16 supersection 16M: 0x11000000 -> 0x81000000',
        'L1[512] 0xbf004001 table: L2 @0xbf004000',
        '  L2[0..15] 0x82000001 ×16 large 64K: 0x20000000 -> 0x82000000',
        '  L2[16] 0x82011002 small 4K: 0x20010000 -> 0x82011000',
        '',
      ].join('\n'),
    );
    const t = await json(['domain', 'pagetable', d.id], env);
    expect(t.family).toBe('omap');
    expect(t.l1).toHaveLength(1 + 16 + 1);
    expect(t.l2[0].entries).toHaveLength(16 + 1);
  }, 60_000);

  it('msm keeps the v7s descriptors as the SMMU walks them', async () => {
    const s = await json(['session', 'create', '--profile', 'tiny']);
    const env = { IOMMUD_SESSION: s.id, IOMMUD_TOKEN: s.token };
    const d = await json(['domain', 'alloc'], env);
    await json(['domain', 'map', d.id, '0x100000', '0x80000000', '0x1000'], env);
    expect((await ctl(['domain', 'pagetable', d.id], env)).stdout).toBe('TTBR0 0x83e00000\nL1[1] 0x83e04001\nL2 @0x83e04000\n  [0] 0x80000c72\n');
  }, 60_000);
});
