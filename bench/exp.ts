import { MSM8X60 } from '../src/hw/profile.js';
import { Session } from '../src/session/session.js';
const s = new Session({ id: 'b', name: 'b', profile: MSM8X60 });
s.dma.map('vfe_imgwr', 0x40000000, 0x1000, 'to-device');
const t0 = performance.now();
for (let i = 0; i < 300000; i++) { const m = s.dma.map('vfe_imgwr', 0x40100000, 0x8000, 'bidirectional'); s.dma.unmap('vfe_imgwr', m.dmaAddr, 0x8000, 'bidirectional'); }
console.log(((performance.now() - t0) / 300000 * 1000).toFixed(0), 'ns');
