import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { runCameraPipeline } from '../../examples/camera-pipeline.js';
import { build } from '../../src/server/app.js';

describe('examples/camera-pipeline.ts', () => {
  let app: FastifyInstance;
  let url: string;
  beforeAll(async () => {
    app = await build();
    url = await app.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(() => app.close());

  it('VFE frames reach the MDP intact; the missing flush is caught by the stale-TLB detector', async () => {
    const r = await runCameraPipeline(url);
    expect(r.framesMatched).toBe(4);
    expect(r.staleHits).toHaveLength(1);
    expect(r.staleHits[0]).toMatchObject({ type: 'stale-tlb-hit', device: 'mdp_vg1', iova: '0x20000000', stale: { paddr: '0x40000000' }, current: { paddr: '0x40040000' } });
    expect(r.afterSync).toBe('ok');
  });
});
