/**
 * The Map-based CPU cache that the slot-based one in src/memory/cache.ts replaced (a Line object and a Uint8Array
 * per cached line), kept as the oracle of test/memory/cache.differential.test.ts: the two must agree on every byte,
 * every event and every line's state, LRU order included.
 */
import { hex } from '../../src/errors.js';
import type { EventSink } from '../../src/events/types.js';
import type { PhysMemory } from '../../src/memory/phys.js';
import type { CoherencyCheck, CpuCacheConfig, CpuCacheSnapshot, DmaView } from '../../src/memory/cache.js';
const BIT: Record<CoherencyCheck, number> = { 'stale-cpu-read': 1, 'device-read-stale': 2, 'lost-device-write': 4, 'cpu-access-device-owned': 8 };

class Line {
  dirty = false;
  /** Byte span [cpuLo, cpuHi) the CPU stored since the fill or the last write-back (empty when lo ≥ hi). */
  cpuLo = 0;
  cpuHi = 0;
  /** Byte span a non-coherent device wrote to RAM since the fill or the last write-back, and by whom. */
  devLo = 0;
  devHi = 0;
  dev: string | null = null;
  /** Checks already reported for this line (bits of BIT) since it was filled, cleaned or invalidated. */
  reported = 0;
  constructor(
    readonly addr: number,
    readonly data: Uint8Array,
  ) {}
}

/** A finding waiting to be emitted: contiguous findings of one check, device and mapping merge into one event. */
interface Finding {
  check: CoherencyCheck;
  device: string | null;
  paddr: number;
  size: number;
  dmaAddr: number | undefined;
}

export class OracleCache {
  readonly lineSize: number;
  readonly capacity: number;
  readonly coherent: ReadonlySet<string>;
  /** Cached lines by line address, least recently used first. */
  private readonly map = new Map<number, Line>();
  /** Cached lines per 4 KiB page: range operations skip pages with none (a DMA buffer is mostly uncached). */
  private readonly pages = new Map<number, number>();
  private readonly mask: number;
  dma: DmaView | null = null;
  private pending: Finding | null = null;

  constructor(
    private readonly mem: PhysMemory,
    cfg: CpuCacheConfig,
    private readonly sink: EventSink,
  ) {
    this.lineSize = cfg.lineSize;
    this.capacity = cfg.lines;
    this.coherent = new Set(cfg.coherent);
    this.mask = ~(cfg.lineSize - 1) >>> 0;
  }

  get used(): number {
    return this.map.size;
  }

  isCoherent(device: string | null): boolean {
    return device !== null && this.coherent.has(device);
  }

  // ---- the CPU side ----------------------------------------------------------------------------------------------

  /**
   * A CPU load of [paddr, paddr+len): missing lines are filled from RAM; a hit on a line a device wrote beneath
   * is a stale-cpu-read. `owner` false exempts the load from the ownership check (bounce copies).
   */
  load(paddr: number, len: number, out: Uint8Array = new Uint8Array(len), owner = true): Uint8Array {
    if (owner) this.checkOwner(paddr, len);
    const ls = this.lineSize;
    for (let a = paddr, o = 0; a < paddr + len; ) {
      const base = (a & this.mask) >>> 0;
      const from = a - base;
      const n = Math.min(ls - from, paddr + len - a);
      let line = this.hit(base);
      if (line === undefined) line = this.fill(base);
      else if (line.devHi > line.devLo && !(line.reported & BIT['stale-cpu-read'])) {
        line.reported |= BIT['stale-cpu-read'];
        this.find('stale-cpu-read', line.dev, base + line.devLo, line.devHi - line.devLo, line.dev);
      }
      out.set(line.data.subarray(from, from + n), o);
      a += n;
      o += n;
    }
    this.emitPending();
    return out;
  }

  /** A CPU store: write-allocate (the line is filled first when missing), then the line is dirty. */
  store(paddr: number, data: Uint8Array, owner = true): void {
    if (owner) this.checkOwner(paddr, data.length);
    const ls = this.lineSize;
    const end = paddr + data.length;
    for (let a = paddr, o = 0; a < end; ) {
      const base = (a & this.mask) >>> 0;
      const from = a - base;
      const n = Math.min(ls - from, end - a);
      const line = this.hit(base) ?? this.fill(base);
      line.data.set(data.subarray(o, o + n), from);
      line.dirty = true;
      if (line.cpuHi <= line.cpuLo) {
        line.cpuLo = from;
        line.cpuHi = from + n;
      } else {
        line.cpuLo = Math.min(line.cpuLo, from);
        line.cpuHi = Math.max(line.cpuHi, from + n);
      }
      a += n;
      o += n;
    }
    this.emitPending();
  }

  // ---- maintenance -------------------------------------------------------------------------------------------------

  /** Writes the dirty lines of the (line-widened) range back to RAM; returns how many were written back. */
  clean(paddr: number, size: number): number {
    let n = 0;
    this.eachCached(paddr, size, (line) => {
      if (line.dirty) {
        this.writeBack(line);
        n++;
      }
      line.reported = 0;
    });
    this.emitPending();
    return n;
  }

  /** Drops the lines of the range (dirty data is lost, as on hardware); returns how many were dropped. */
  invalidate(paddr: number, size: number): number {
    let n = 0;
    this.eachCached(paddr, size, (line) => {
      this.drop(line);
      n++;
    });
    return n;
  }

  /** Clean, then invalidate; returns how many lines were dropped. */
  flush(paddr: number, size: number): number {
    let n = 0;
    this.eachCached(paddr, size, (line) => {
      if (line.dirty) this.writeBack(line);
      this.drop(line);
      n++;
    });
    this.emitPending();
    return n;
  }

  /**
   * The DMA API's invalidation (ARMv7 dma_inv_range): a partial line at either end is cleaned and invalidated,
   * so the neighbouring data sharing it survives; the whole lines between are invalidated.
   */
  dmaInvalidate(paddr: number, size: number): number {
    if (size <= 0) return 0;
    const ls = this.lineSize;
    const end = paddr + size;
    let n = 0;
    const first = (paddr & this.mask) >>> 0;
    const last = ((end - 1) & this.mask) >>> 0;
    if (paddr !== first) n += this.flush(first, 1);
    if (end !== last + ls && !(last === first && paddr !== first)) n += this.flush(last, 1);
    const lo = paddr === first ? first : first + ls;
    const hi = end === last + ls ? end : last;
    if (hi > lo) n += this.invalidate(lo, hi - lo);
    return n;
  }

  /** Drops lines without writing back and without checks (a new buffer's range, before it is zeroed). */
  discard(paddr: number, size: number): void {
    this.eachCached(paddr, size, (line) => this.drop(line));
  }

  // ---- the device side -------------------------------------------------------------------------------------------

  /**
   * A device reads RAM: a non-coherent device sees RAM beneath the cache (device-read-stale when the CPU holds
   * newer, dirty bytes for it); a coherent one snoops cached lines.
   */
  deviceRead(device: string | null, paddr: number, len: number, out: Uint8Array, outOffset: number): void {
    this.mem.readBytes(paddr, len, out, outOffset);
    const coherent = this.isCoherent(device);
    this.eachCached(paddr, len, (line) => {
      if (coherent) {
        const lo = Math.max(line.addr, paddr);
        const hi = Math.min(line.addr + this.lineSize, paddr + len);
        out.set(line.data.subarray(lo - line.addr, hi - line.addr), outOffset + lo - paddr);
        return;
      }
      if (!line.dirty || line.cpuHi <= line.cpuLo || line.reported & BIT['device-read-stale']) return;
      const lo = Math.max(line.addr + line.cpuLo, paddr);
      const hi = Math.min(line.addr + line.cpuHi, paddr + len);
      if (hi <= lo) return;
      line.reported |= BIT['device-read-stale'];
      this.find('device-read-stale', device, lo, hi - lo, device);
    });
    this.emitPending();
  }

  /** A device writes RAM: cached lines of a non-coherent device's bytes go stale; a coherent one updates them. */
  deviceWrite(device: string | null, paddr: number, data: Uint8Array): void {
    this.mem.writeBytes(paddr, data);
    const coherent = this.isCoherent(device);
    const end = paddr + data.length;
    this.eachCached(paddr, data.length, (line) => {
      const lo = Math.max(line.addr, paddr) - line.addr;
      const hi = Math.min(line.addr + this.lineSize, end) - line.addr;
      if (coherent) {
        line.data.set(data.subarray(line.addr + lo - paddr, line.addr + hi - paddr), lo);
        return;
      }
      if (line.devHi <= line.devLo) {
        line.devLo = lo;
        line.devHi = hi;
      } else {
        line.devLo = Math.min(line.devLo, lo);
        line.devHi = Math.max(line.devHi, hi);
      }
      line.dev = device;
    });
  }

  // ---- inspection and state ------------------------------------------------------------------------------------

  /** Cached lines overlapping the range (all without one), in address order. */
  entries(paddr?: number, size?: number): Array<{ paddr: number; dirty: boolean }> {
    const out: Array<{ paddr: number; dirty: boolean }> = [];
    if (paddr === undefined) for (const l of this.map.values()) out.push({ paddr: l.addr, dirty: l.dirty });
    else this.eachCached(paddr, size ?? this.lineSize, (l) => out.push({ paddr: l.addr, dirty: l.dirty }));
    return out.sort((a, b) => a.paddr - b.paddr);
  }

  /** The cached copy of one line (for tests and views), or undefined. */
  peek(addr: number): { data: Uint8Array; dirty: boolean } | undefined {
    const l = this.map.get((addr & this.mask) >>> 0);
    return l && { data: l.data, dirty: l.dirty };
  }

  snapshot(): CpuCacheSnapshot {
    return {
      lines: [...this.map.values()].map((l) => ({
        addr: l.addr,
        data: Buffer.from(l.data).toString('base64'),
        dirty: l.dirty,
        cpu: [l.cpuLo, l.cpuHi],
        dev: [l.devLo, l.devHi, l.dev],
        reported: l.reported,
      })),
    };
  }

  restore(s: CpuCacheSnapshot): void {
    this.map.clear();
    this.pages.clear();
    for (const x of s.lines) {
      const l = new Line(x.addr, new Uint8Array(Buffer.from(x.data, 'base64')));
      l.dirty = x.dirty;
      [l.cpuLo, l.cpuHi] = x.cpu;
      [l.devLo, l.devHi, l.dev] = x.dev;
      l.reported = x.reported;
      this.map.set(l.addr, l);
      this.pages.set(l.addr >>> 12, (this.pages.get(l.addr >>> 12) ?? 0) + 1);
    }
  }

  // ---- internals -------------------------------------------------------------------------------------------------

  /** A cached line, moved to most recently used. */
  private hit(base: number): Line | undefined {
    const line = this.map.get(base);
    if (line !== undefined) {
      this.map.delete(base);
      this.map.set(base, line);
    }
    return line;
  }

  /** Fills a line from RAM, evicting the least recently used (written back when dirty) if the cache is full. */
  private fill(base: number): Line {
    if (this.map.size >= this.capacity) {
      const victim = this.map.values().next().value!;
      if (victim.dirty) this.writeBack(victim);
      this.drop(victim);
    }
    const line = new Line(base, this.mem.readBytes(base, this.lineSize));
    this.map.set(base, line);
    this.pages.set(base >>> 12, (this.pages.get(base >>> 12) ?? 0) + 1);
    return line;
  }

  private drop(line: Line): void {
    this.map.delete(line.addr);
    const pg = line.addr >>> 12;
    const n = this.pages.get(pg)! - 1;
    if (n === 0) this.pages.delete(pg);
    else this.pages.set(pg, n);
  }

  /** Writes a whole line back; bytes a device wrote since the fill are overwritten (lost-device-write). */
  private writeBack(line: Line): void {
    if (line.devHi > line.devLo && !(line.reported & BIT['lost-device-write'])) {
      this.find('lost-device-write', line.dev, line.addr + line.devLo, line.devHi - line.devLo, line.dev);
    }
    this.mem.writeBytes(line.addr, line.data);
    line.dirty = false;
    line.cpuLo = line.cpuHi = 0;
    line.devLo = line.devHi = 0;
    line.dev = null;
    line.reported = 0;
  }

  /** Calls fn for every cached line overlapping [paddr, paddr+size), in address order (fn may drop the line). */
  private eachCached(paddr: number, size: number, fn: (line: Line) => void): void {
    if (size <= 0 || this.map.size === 0) return;
    const first = (paddr & this.mask) >>> 0;
    const end = paddr + size;
    const firstPage = first >>> 12;
    const lastPage = (end - 1) >>> 12;
    if (lastPage - firstPage + 1 > this.pages.size * 2) {
      // A range far larger than what is cached: walk the cache, not the range.
      const hits = [...this.map.values()].filter((l) => l.addr + this.lineSize > paddr && l.addr < end).sort((a, b) => a.addr - b.addr);
      for (const l of hits) fn(l);
      return;
    }
    for (let pg = firstPage; pg <= lastPage; pg++) {
      if (!this.pages.has(pg)) continue;
      const hi = Math.min(end, (pg + 1) * 4096);
      for (let a = Math.max(first, pg * 4096); a < hi; a += this.lineSize) {
        const line = this.map.get(a);
        if (line !== undefined) fn(line);
      }
    }
  }

  private checkOwner(paddr: number, len: number): void {
    const owned = this.dma?.owned(paddr, len);
    if (!owned) return;
    const ls = this.lineSize;
    for (const r of owned) {
      const lo = Math.max(r.paddr, paddr);
      const hi = Math.min(r.paddr + r.size, paddr + len);
      // Once per line: the line's reported bit is set as the access fills or finds it.
      for (let a = lo; a < hi; ) {
        const base = (a & this.mask) >>> 0;
        const n = Math.min(base + ls, hi) - a;
        const line = this.hit(base) ?? this.fill(base);
        if (!(line.reported & BIT['cpu-access-device-owned'])) {
          line.reported |= BIT['cpu-access-device-owned'];
          this.find('cpu-access-device-owned', r.device, a, n, null, r.dmaAddr + (a - r.paddr));
        }
        a += n;
      }
    }
  }

  /** Queues a finding, merged with the previous one when it continues it. */
  private find(check: CoherencyCheck, device: string | null, paddr: number, size: number, mappedBy: string | null, dmaAddr?: number): void {
    const dma = dmaAddr ?? (mappedBy !== null ? this.dma?.dmaAddrOf(mappedBy, paddr) : undefined);
    const p = this.pending;
    if (
      p && p.check === check && p.device === device && p.paddr + p.size === paddr &&
      (p.dmaAddr === undefined ? dma === undefined : dma === p.dmaAddr + p.size)
    ) {
      p.size += size;
      return;
    }
    this.emitPending();
    this.pending = { check, device, paddr, size, dmaAddr: dma };
  }

  private emitPending(): void {
    const p = this.pending;
    if (!p) return;
    this.pending = null;
    this.sink.emit({ type: 'coherency', check: p.check, device: p.device, paddr: hex(p.paddr), size: p.size, ...(p.dmaAddr !== undefined ? { dmaAddr: hex(p.dmaAddr) } : {}) });
  }
}

