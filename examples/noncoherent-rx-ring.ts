/**
 * A receive ring on a non-coherent SoC, played through the SDK alone: the driver maps its RX buffers
 * from-device, polls each buffer's header for the "packet ready" word the device writes, and reads the packet.
 * The CPU reads through a write-back cache while the device writes RAM beneath it, so the driver must call
 * dma_sync_single_for_cpu before it looks and dma_sync_single_for_device to give the buffer back. A coherent
 * emulator lets the broken driver pass; iommud shows the stale read and names the missing call.
 *
 *   npx tsx examples/noncoherent-rx-ring.ts [http://127.0.0.1:8080]
 */
import { IommudClient, isCoherencyEvent, type CoherencyEvent } from '../src/client/index.js';

export interface RxRingReport {
  driver: 'buggy' | 'fixed';
  entries: number;
  packetsSeen: number;
  packetsIntact: number;
  coherency: CoherencyEvent[];
}

const ENTRIES = 4;
const BUF = 2048;
const HEADER = 64;
const READY = 0x52454459; // "YDER": the device's "packet ready" word

/** One run of the ring; `fixed` adds the two sync calls the buggy driver forgets. */
export async function runRxRing(url: string, fixed: boolean, log: (s: string) => void = () => {}): Promise<RxRingReport> {
  const client = new IommudClient({ url });
  const s = await client.createSession({ profile: 'tiny', name: `rx-ring-${fixed ? 'fixed' : 'buggy'}`, cpuCache: { lineSize: 32, lines: 1024 } });
  const events: CoherencyEvent[] = [];
  const sub = s.subscribe({ types: ['coherency'], onEvent: (e) => isCoherencyEvent(e) && events.push(e) });
  await sub.ready();
  const nic = 'dev0';
  try {
    const ring = await s.allocBuffer({ size: ENTRIES * BUF });
    const base = Number(ring.paddr);
    const handles: number[] = [];
    for (let i = 0; i < ENTRIES; i++) handles.push(Number((await s.dmaMap(nic, { paddr: base + i * BUF, size: BUF, dir: 'from-device' })).dmaAddr));
    const sync = (i: number, size: number, to: 'cpu' | 'device') => (fixed ? s.dmaSync(nic, { dmaAddr: handles[i]!, size, for: to }) : Promise.resolve());
    /** The driver's poll of entry i: is the ready word there? */
    const poll = async (i: number): Promise<number> => {
      await sync(i, HEADER, 'cpu');
      const hdr = Buffer.from(await s.readMemory(base + i * BUF, 8));
      const ready = hdr.readUInt32LE(0) === READY ? hdr.readUInt32LE(4) : -1;
      if (ready < 0) await sync(i, HEADER, 'device'); // nothing yet: the buffer goes back to the device
      return ready;
    };
    let seen = 0;
    let intact = 0;
    for (let i = 0; i < ENTRIES; i++) {
      if ((await poll(i)) >= 0) throw new Error('a packet before the device sent one');
      // The NIC receives a packet into entry i: payload after the header, then the ready word and the length.
      const payload = Buffer.alloc(1000, `packet ${i} `);
      const frame = Buffer.concat([Buffer.alloc(8), Buffer.alloc(HEADER - 8), payload]);
      frame.writeUInt32LE(READY, 0);
      frame.writeUInt32LE(payload.length, 4);
      await s.access(nic, { iova: handles[i]!, access: 'write', data: frame.toString('base64') });
      const len = await poll(i);
      if (len < 0) {
        log(`entry ${i}: the driver still sees an empty buffer (stale cache line)`);
        continue;
      }
      seen++;
      await sync(i, BUF, 'cpu');
      const got = Buffer.from(await s.readMemory(base + i * BUF + HEADER, len));
      if (got.equals(payload)) intact++;
      log(`entry ${i}: ${len}-byte packet ${got.equals(payload) ? 'intact' : 'CORRUPT'}`);
      // Recycle: clear the ready word and hand the buffer back to the device.
      await s.writeMemory(base + i * BUF, new Uint8Array(8));
      await sync(i, BUF, 'device');
    }
    for (let i = 0; i < ENTRIES; i++) await s.dmaUnmap(nic, { dmaAddr: handles[i]!, size: BUF, dir: 'from-device' });
    await new Promise((r) => setTimeout(r, 50));
    return { driver: fixed ? 'fixed' : 'buggy', entries: ENTRIES, packetsSeen: seen, packetsIntact: intact, coherency: events };
  } finally {
    sub.close();
    await s.delete();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const url = process.argv[2] ?? 'http://127.0.0.1:8080';
  for (const fixed of [false, true]) {
    const r = await runRxRing(url, fixed, (l) => console.log(`  ${l}`));
    console.log(`${r.driver} driver: ${r.packetsSeen}/${r.entries} packets seen, ${r.packetsIntact} intact; coherency events: ${r.coherency.length}`);
    for (const e of r.coherency) console.log(`  ${e.check} on ${e.device} at ${e.paddr} (+${e.size})${e.dmaAddr ? ` dma ${e.dmaAddr}` : ''}`);
  }
}
