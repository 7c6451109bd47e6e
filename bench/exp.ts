import { TINY } from '../src/hw/profile.js';
import { Session } from '../src/session/session.js';
const s = new Session({ id: 'b', name: 'b', profile: TINY, tlbEntries: 128 });
const { smmu, bank } = s.soc.device('dev0');
const d = s.iommu.domainAlloc({ pgsizes: [0x1000] });
s.iommu.attach(d.id, 'dev0');
s.iommu.map(d.id, 0x10000000, 0x80000000, 64 * 0x1000, 3);
const iovas = new Uint32Array(4096);
for (let i = 0; i < iovas.length; i++) iovas[i] = 0x10000000 + ((i * 37) % 64) * 0x1000;
let sink = 0;
for (const v of iovas) smmu.translate(bank, v, 0, false, 2);
const tlb = smmu.tlb;
const run = (name: string, f: (n: number) => void) => {
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    f(5e6);
    if (r === 2) console.log(name, (5e6 / (performance.now() - t0) / 1e3).toFixed(1), 'M/s');
  }
};
run('lookup', (n) => { for (let i = 0; i < n; i++) { const e = tlb.lookup(0, 0, iovas[i & 4095]!); if (e && typeof e === 'object') sink += e.paBase; } });
run('translate', (n) => { for (let i = 0; i < n; i++) sink += smmu.translate(bank, iovas[i & 4095]!, 0, false, 2).paddr; });
const m = new Map<number, { paBase: number }>();
for (let p = 0; p < 64; p++) m.set(0x10000 + p, { paBase: p });
run('map', (n) => { for (let i = 0; i < n; i++) { const e = m.get(iovas[i & 4095]! >>> 12); if (e) sink += e.paBase; } });
console.log(sink > 0);
