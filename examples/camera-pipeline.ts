/**
 * A camera pipeline as a HIL rig would drive it, through the SDK only: the VFE writes frames through its SMMU
 * into buffers, the MDP reads them back through its own, both attached to one domain (peer-to-peer through
 * system memory). The driver then recycles a buffer and forgets the TLB flush: the stale-TLB detector catches it.
 *
 *   npx tsx examples/camera-pipeline.ts [http://127.0.0.1:8080]
 */
import { IommudClient, type IommudEvent } from '../src/client/index.js';

export interface PipelineReport {
  frames: number;
  framesMatched: number;
  staleHits: IommudEvent[];
  afterSync: 'ok' | 'stale';
}

export async function runCameraPipeline(url: string, log: (s: string) => void = () => {}): Promise<PipelineReport> {
  const client = new IommudClient({ url });
  const s = await client.createSession({ profile: 'msm8x60', name: 'camera-pipeline' });
  const stale: IommudEvent[] = [];
  const sub = s.subscribe({ types: ['stale-tlb-hit'], onEvent: (e) => stale.push(e) });
  await sub.ready();
  try {
    const dom = await s.allocDomain({ flushPolicy: 'deferred', label: 'camera' });
    await s.attach(dom.id, 'vfe_imgwr');
    await s.attach(dom.id, 'mdp_vg1');
    const FRAME = 64 * 1024;
    const IOVA = 0x20000000;
    const vfe = await s.stream('vfe_imgwr');
    const mdp = await s.stream('mdp_vg1');
    let matched = 0;
    const frames = 4;
    const bufs: string[] = [];
    for (let f = 0; f < frames; f++) {
      const buf = await s.allocBuffer({ size: FRAME, pools: ['ebi1'] });
      bufs.push(buf.paddr);
      const iova = IOVA + f * FRAME;
      await s.map(dom.id, { iova, paddr: buf.paddr, size: FRAME, prot: ['read', 'write'] });
      const pixels = new Uint8Array(FRAME).map((_, i) => (i * 7 + f) & 0xff);
      const w = await vfe.write([{ iova, data: pixels }]);
      if (w[0]!.status !== 'ok') throw new Error(`vfe write faulted: ${w[0]!.status}`);
      const [r] = await mdp.read([{ iova, length: FRAME }]);
      if (r!.status === 'ok' && Buffer.compare(Buffer.from(r!.data!), Buffer.from(pixels)) === 0) matched++;
      log(`frame ${f}: VFE wrote ${FRAME} bytes at ${iova.toString(16)}, MDP read them back ${r!.status}`);
    }
    // Recycle frame 0's IOVA onto a fresh buffer — and forget iotlb_sync (the bug class rigs hunt).
    await s.unmap(dom.id, { iova: IOVA, size: FRAME });
    const fresh = await s.allocBuffer({ size: FRAME, pools: ['ebi1'] });
    await s.map(dom.id, { iova: IOVA, paddr: fresh.paddr, size: FRAME, prot: ['read', 'write'] });
    const [late] = await mdp.translate('read', [IOVA]);
    log(`after remap without sync: MDP translated ${IOVA.toString(16)} → ${late!.paddr.toString(16)} stale=${late!.stale}`);
    await new Promise((r) => setTimeout(r, 100));
    await s.sync(dom.id);
    const [fixed] = await mdp.translate('read', [IOVA]);
    log(`after sync: → ${fixed!.paddr.toString(16)} stale=${fixed!.stale}`);
    vfe.close();
    mdp.close();
    return { frames, framesMatched: matched, staleHits: stale, afterSync: fixed!.stale ? 'stale' : 'ok' };
  } finally {
    sub.close();
    await s.delete();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const report = await runCameraPipeline(process.argv[2] ?? 'http://127.0.0.1:8080', (l) => console.log(l));
  console.log(`${report.framesMatched}/${report.frames} frames intact; stale-TLB hits caught: ${report.staleHits.length}; after sync: ${report.afterSync}`);
}
