import { describe, expect, it } from 'vitest';
import { runCameraPipeline } from '../../examples/camera-pipeline.js';
import { listeningDaemon } from '../support/daemon.js';

describe('examples/camera-pipeline.ts', () => {
  const daemon = listeningDaemon();

  it('VFE frames reach the MDP intact; the missing flush is caught by the stale-TLB detector', async () => {
    const r = await runCameraPipeline(daemon.url());
    expect(r.framesMatched).toBe(4);
    expect(r.staleHits).toHaveLength(1);
    expect(r.staleHits[0]).toMatchObject({ type: 'stale-tlb-hit', device: 'mdp_vg1', iova: '0x20000000', stale: { paddr: '0x40000000' }, current: { paddr: '0x40040000' } });
    expect(r.afterSync).toBe('ok');
  });
});
