/**
 * A SoC with IOMMUs of three families ("if you have IOMMUs of different types in the same system"), through the
 * SDK only: a camera behind an MSM SMMU writes a frame, a DSP behind an OMAP IOMMU reads it through its own page
 * table, and the 2D engine reads it through the Tegra GART's aperture with the DMA API, all from one buffer.
 * Then each family's fault shows its own registers.
 *
 *   npx tsx examples/mixed-soc.ts [http://127.0.0.1:8080]
 */
import { IommudClient, type EventOf } from '../src/client/index.js';

export const MIXED_SOC = {
  name: 'mixed-soc',
  description: 'camera on an MSM SMMU, DSP on an OMAP IOMMU, 2D and display on a Tegra GART',
  smmus: [
    { name: 'cam_smmu', family: 'msm' as const, base: '0x07900000', banks: 2, contexts: [{ index: 0, name: 'camera', mids: [2] }] },
    { name: 'mmu_dsp', family: 'omap' as const, base: '0x4a066000', contexts: [{ index: 0, name: 'dsp', mids: [0] }] },
    {
      name: 'gart',
      family: 'gart' as const,
      base: '0x7000f000',
      aperture: { base: '0x58000000', size: '0x2000000' },
      contexts: [{ index: 0, name: 'gr2d', mids: [0x11, 0x28] }, { index: 0, name: 'display', mids: [0x00, 0x00] }],
    },
  ],
  // Below 2 GiB, so the GART (PA bits 30:12) can reach it too.
  memory: [{ name: 'ram', base: '0x10000000', size: '0x4000000', priority: 0 }],
  pagetablePool: { base: '0x13e00000', size: '0x200000' },
};

export interface MixedReport {
  families: string[];
  buffer: string;
  camera: { iova: string; wrote: number };
  dsp: { iova: string; matched: boolean; tlb: string[] };
  gr2d: { dmaAddr: string; matched: boolean };
  faults: Array<Record<string, unknown>>;
}

export async function runMixedSoc(url: string, log: (s: string) => void = () => {}): Promise<MixedReport> {
  const client = new IommudClient({ url });
  const s = await client.createSession({ profile: MIXED_SOC, name: 'mixed-soc' });
  const faults: EventOf<'fault'>[] = [];
  const sub = s.subscribe({ types: ['fault'], onEvent: (e) => faults.push(e) });
  await sub.ready();
  try {
    const families = (await s.smmus()).map((x) => `${x.name}:${x.family}`);
    const FRAME = 0x10000;
    const buf = await s.allocBuffer({ size: FRAME });
    const pixels = new Uint8Array(FRAME).map((_, i) => (i * 13 + 5) & 0xff);

    // The camera: an msm domain (ARMv7 short descriptors), one 64K large page.
    const cam = await s.allocDomain({ for: 'camera', label: 'camera' });
    await s.attach(cam.id, 'camera');
    await s.map(cam.id, { iova: '0x20000000', paddr: buf.paddr, size: FRAME, prot: ['write'] });
    const camStream = await s.stream('camera');
    const [w] = await camStream.write([{ iova: 0x20000000, data: pixels }]);
    if (w!.status !== 'ok') throw new Error(`camera write faulted: ${w!.status}`);
    log(`camera (msm) wrote ${FRAME} bytes at 0x20000000 → ${buf.paddr}`);

    // The DSP: an omap domain (OMAP descriptors, no permission bits) over the same buffer, at another IOVA.
    const dsp = await s.allocDomain({ for: 'dsp', label: 'dsp' });
    await s.attach(dsp.id, 'dsp');
    await s.map(dsp.id, { iova: '0x11000000', paddr: buf.paddr, size: FRAME, prot: ['read'] });
    const dspStream = await s.stream('dsp');
    const [r] = await dspStream.read([{ iova: 0x11000000, length: FRAME }]);
    const dspMatched = r!.status === 'ok' && Buffer.compare(Buffer.from(r!.data!), Buffer.from(pixels)) === 0;
    const tlb = (await dspStream.translate('read', [0x11000000, 0x11001000])).map((x) => x.tlb ?? x.status);
    log(`dsp (omap) read the frame at 0x11000000: ${dspMatched ? 'intact' : 'corrupt'}; TLB ${tlb.join(', ')}`);

    // The 2D engine: the DMA API on the GART, whose IOVAs come from its aperture.
    const m = await s.dmaMap('gr2d', { paddr: buf.paddr, size: FRAME, dir: 'to-device' });
    const gr2d = await s.stream('gr2d');
    const [g] = await gr2d.read([{ iova: Number(m.dmaAddr), length: FRAME }]);
    const gr2dMatched = g!.status === 'ok' && Buffer.compare(Buffer.from(g!.data!), Buffer.from(pixels)) === 0;
    log(`gr2d (gart) read the frame at ${m.dmaAddr} (aperture): ${gr2dMatched ? 'intact' : 'corrupt'}`);

    // One fault per family, each with its own registers.
    await s.access('camera', { iova: '0x30000000', access: 'read' });
    await s.access('dsp', { iova: '0x12000000', access: 'read' });
    await s.access('gr2d', { iova: '0x58000000', access: 'write' });
    await new Promise((res) => setTimeout(res, 100));
    for (const f of faults) log(`fault on ${String(f.smmu)}: ${JSON.stringify(f)}`);
    await s.dmaUnmap('gr2d', { dmaAddr: m.dmaAddr, size: FRAME, dir: 'to-device' });
    camStream.close();
    dspStream.close();
    gr2d.close();
    return {
      families,
      buffer: buf.paddr,
      camera: { iova: '0x20000000', wrote: FRAME },
      dsp: { iova: '0x11000000', matched: dspMatched, tlb },
      gr2d: { dmaAddr: m.dmaAddr, matched: gr2dMatched },
      faults,
    };
  } finally {
    sub.close();
    await s.delete();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const report = await runMixedSoc(process.argv[2] ?? 'http://127.0.0.1:8080', (l) => console.log(l));
  console.log(`${report.families.join(' ')}: dsp ${report.dsp.matched ? 'ok' : 'BAD'}, gr2d ${report.gr2d.matched ? 'ok' : 'BAD'}, ${report.faults.length} faults`);
}
