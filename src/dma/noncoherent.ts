/**
 * What the DMA API does for a device that does not snoop the CPU cache (API.md v1.1): ARM dma-mapping's cache
 * maintenance per direction, buffer ownership per mapping (map and sync-for-device hand the buffer to the device,
 * sync-for-cpu and unmap give it back), and swiotlb's bounce copies. Bounce copies are CPU copies: through the
 * cache when there is one, exempt from the ownership check.
 */
import { hex } from '../errors.js';
import type { EventSink } from '../events/types.js';
import type { CpuCache, DmaView, OwnedRange } from '../memory/cache.js';
import type { PhysMemory } from '../memory/phys.js';
import type { DeviceDmaState, DmaMapping } from './dma.js';
import type { BouncePool } from './swiotlb.js';

type Segment = DmaMapping['segments'][number];

export class DmaMaintenance implements DmaView {
  constructor(
    private readonly devices: ReadonlyMap<string, DeviceDmaState>,
    readonly cache: CpuCache | null,
    readonly pool: BouncePool | null,
    private readonly mem: PhysMemory,
    private readonly sink: EventSink,
  ) {}

  /** dma_map_*: the buffer goes to the device. */
  mapped(device: string, m: DmaMapping): void {
    for (const s of m.segments) this.toDevice(device, m, s, 0, s.size);
    if (this.cache) m.owner = 'device';
  }

  /** dma_sync_*_for_{cpu,device} of [start, start+size) in DMA space (inside one live mapping). */
  synced(device: string, m: DmaMapping, start: number, size: number, forWhom: 'cpu' | 'device'): void {
    for (const s of m.segments) {
      const lo = Math.max(start, s.dmaAddr);
      const hi = Math.min(start + size, s.dmaAddr + s.size);
      if (hi <= lo) continue;
      if (forWhom === 'device') this.toDevice(device, m, s, lo - s.dmaAddr, hi - lo);
      else this.toCpu(device, m, s, lo - s.dmaAddr, hi - lo);
    }
    if (this.cache) m.owner = forWhom;
  }

  /** dma_unmap_*: the buffer comes back to the CPU; bounce slots are freed. */
  unmapped(device: string, m: DmaMapping): void {
    for (const s of m.segments) {
      this.toCpu(device, m, s, 0, s.size);
      if (s.bounce) this.pool!.free(s.bounce.paddr, s.bounce.slots);
    }
    delete m.owner;
  }

  /** arch_sync_dma_for_device: copy into the slots, then clean (or invalidate, from-device) what the device reads. */
  private toDevice(device: string, m: DmaMapping, s: Segment, off: number, n: number): void {
    if (s.bounce && m.dir !== 'from-device') this.copy(device, m, s.paddr + off, s.bounce.paddr + off, n);
    const cache = this.cache;
    if (!cache || cache.isCoherent(device)) return;
    const target = (s.bounce ? s.bounce.paddr : s.paddr) + off;
    if (m.dir === 'from-device') cache.dmaInvalidate(target, n);
    else cache.clean(target, n);
  }

  /** arch_sync_dma_for_cpu: invalidate what the device wrote, then copy out of the slots. */
  private toCpu(device: string, m: DmaMapping, s: Segment, off: number, n: number): void {
    if (m.dir === 'to-device') return;
    const cache = this.cache;
    if (cache && !cache.isCoherent(device)) cache.dmaInvalidate((s.bounce ? s.bounce.paddr : s.paddr) + off, n);
    if (s.bounce) this.copy(device, m, s.bounce.paddr + off, s.paddr + off, n);
  }

  private copy(device: string, m: DmaMapping, from: number, to: number, n: number): void {
    const cache = this.cache;
    if (cache) cache.copy(from, to, n);
    else this.mem.copy(from, to, n);
    this.pool!.bytesBounced += n;
    this.sink.emit({ type: 'bounce', device, dir: m.dir, from: hex(from), to: hex(to), bytes: n, dmaAddr: hex(m.dmaAddr) });
  }

  // ---- DmaView: what the cache asks -----------------------------------------------------------------------------

  owned(paddr: number, len: number): OwnedRange[] | null {
    let out: OwnedRange[] | null = null;
    for (const st of this.devices.values()) {
      for (const m of st.mappings.values()) {
        if (m.owner !== 'device') continue;
        for (const s of m.segments) {
          if (s.paddr < paddr + len && paddr < s.paddr + s.size) (out ??= []).push({ device: st.device, paddr: s.paddr, size: s.size, dmaAddr: s.dmaAddr });
        }
      }
    }
    return out;
  }

  dmaAddrOf(device: string, paddr: number): number | undefined {
    const st = this.devices.get(device);
    if (!st) return undefined;
    for (const m of st.mappings.values()) {
      for (const s of m.segments) {
        if (paddr >= s.paddr && paddr < s.paddr + s.size) return s.dmaAddr + (paddr - s.paddr);
        if (s.bounce && paddr >= s.bounce.paddr && paddr < s.bounce.paddr + s.size) return s.dmaAddr + (paddr - s.bounce.paddr);
      }
    }
    return undefined;
  }
}
