import { describe, expect, it } from 'vitest';
import { runMixedSoc } from '../../examples/mixed-soc.js';
import { listeningDaemon } from '../support/daemon.js';

describe('examples/mixed-soc.ts', () => {
  const daemon = listeningDaemon();

  it('camera on msm, DSP on omap and 2D on the GART share one buffer; each family faults with its own registers', async () => {
    const r = await runMixedSoc(daemon.url());
    expect(r.families).toEqual(['cam_smmu:msm', 'mmu_dsp:omap', 'gart:gart']);
    expect(r.buffer).toBe('0x10000000');
    expect(r.dsp).toEqual({ iova: '0x11000000', matched: true, tlb: ['hit', 'hit'] });
    expect(r.gr2d).toEqual({ dmaAddr: '0x59ff0000', matched: true });
    expect(r.faults).toHaveLength(3);
    expect(r.faults[0]).toMatchObject({ smmu: 'cam_smmu', device: 'camera', family: 'msm', kind: 'translation', fsr: '0x2', far: '0x30000000' });
    expect(r.faults[1]).toMatchObject({ smmu: 'mmu_dsp', device: 'dsp', family: 'omap', kind: 'translation', flags: 0, irqstatus: '0x2', faultAd: '0x12000000' });
    expect(r.faults[2]).toMatchObject({ smmu: 'gart', device: 'gr2d', family: 'gart', kind: 'translation', flags: 1, intstatus: '0x80', errorReq: '0x51', errorAddr: '0x58000000', client: { id: 0x28, name: 'g2dw' } });
  });
});
