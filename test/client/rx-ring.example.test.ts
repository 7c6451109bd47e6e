import { describe, expect, it } from 'vitest';
import { runRxRing } from '../../examples/noncoherent-rx-ring.js';
import { listeningDaemon } from '../support/daemon.js';

describe('examples/noncoherent-rx-ring.ts', () => {
  const daemon = listeningDaemon();

  it('without dma_sync_single_for_cpu the driver reads stale lines, and the events name the buffer and its mapping', async () => {
    const r = await runRxRing(daemon.url(), false);
    expect([r.packetsSeen, r.packetsIntact]).toEqual([0, 0]);
    expect(r.coherency.map((e) => e.check)).toEqual(Array.from({ length: 4 }, () => ['cpu-access-device-owned', 'stale-cpu-read']).flat());
    expect(r.coherency.slice(0, 2)).toMatchObject([
      { check: 'cpu-access-device-owned', device: 'dev0', paddr: '0x80000000', size: 8, dmaAddr: '0xfffff000' },
      { check: 'stale-cpu-read', device: 'dev0', paddr: '0x80000000', size: 32, dmaAddr: '0xfffff000' },
    ]);
  });

  it('the same driver with its syncs receives every packet intact, and no event', async () => {
    const r = await runRxRing(daemon.url(), true);
    expect([r.packetsSeen, r.packetsIntact, r.coherency]).toEqual([4, 4, []]);
  });
});
