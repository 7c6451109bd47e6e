import { describe, expect, it } from 'vitest';
import { IommudClient, isBounceEvent, isCacheEvent, isCoherencyEvent, type IommudEvent } from '../../src/client/index.js';
import { listeningDaemon } from '../support/daemon.js';

const text = (b: Uint8Array) => Buffer.from(b).toString('latin1');

/**
 * Non-coherent DMA through the SDK alone (issue 14): the typed cache and DMA methods, the binary stream's data
 * operations beneath the CPU cache, and the coherency, bounce and cache events with their guards.
 */
describe('SDK: CPU cache, stream data operations and bounce buffers', () => {
  const daemon = listeningDaemon();

  it('stream reads and writes go beneath the cache (device-read-stale, stale-cpu-read); maintenance and bounce copies are typed events', async () => {
    const client = new IommudClient({ url: daemon.url() });
    const s = await client.createSession({ profile: 'tiny', cpuCache: { lineSize: 32, lines: 64 }, bounce: { paddr: '0x80100000', size: 0x1000 } });
    const events: IommudEvent[] = [];
    const sub = s.subscribe({ types: ['coherency', 'bounce', 'cache'], onEvent: (e) => events.push(e) });
    await sub.ready();
    const d = await s.allocDomain({});
    await s.attach(d.id, 'dev0');
    await s.map(d.id, { iova: '0x10000000', paddr: '0x80000000', size: 0x1000, prot: ['read', 'write'] });
    const stream = await s.stream('dev0');
    try {
      // The CPU's store sits dirty in its cache: the device's stream read gets RAM's old bytes.
      await s.writeMemory('0x80000000', Buffer.from('CPU!'));
      expect((await s.cache({ paddr: '0x80000000', size: 4 })).entries).toEqual([{ paddr: '0x80000000', dirty: true }]);
      const [r] = await stream.read([{ iova: 0x10000000, length: 4 }]);
      expect([r!.status, Array.from(r!.data!)]).toEqual(['ok', [0, 0, 0, 0]]);
      expect(await s.cacheClean('0x80000000', 4)).toEqual({ lines: 1 });
      expect(text(await s.readMemory('0x80000000', 4, { view: 'ram' }))).toBe('CPU!');
      const [again] = await stream.read([{ iova: 0x10000000, length: 4 }]);
      expect(text(again!.data!)).toBe('CPU!');

      // A stream write lands in RAM beneath a cached line: the CPU keeps reading its stale copy until invalidated.
      expect(text(await s.readMemory('0x80000040', 4))).toBe('\0\0\0\0');
      const [w] = await stream.write([{ iova: 0x10000040, data: Buffer.from('DEV!') }]);
      expect(w!.status).toBe('ok');
      expect(text(await s.readMemory('0x80000040', 4))).toBe('\0\0\0\0');
      expect(text(await s.readMemory('0x80000040', 4, { view: 'ram' }))).toBe('DEV!');
      expect(await s.cacheInvalidate('0x80000040', 4)).toEqual({ lines: 1 });
      expect(text(await s.readMemory('0x80000040', 4))).toBe('DEV!');
    } finally {
      stream.close();
    }

    // Direct mode past the mask: the map bounces through the pool, a CPU copy through the cache.
    expect((await s.dmaConfigure('dev1', { mode: 'direct', dmaLimit: '0x80ffffff' })).mode).toBe('direct');
    await s.writeMemory('0x82000000', Buffer.from('hello'));
    expect(await s.dmaMap('dev1', { paddr: '0x82000000', size: 0x40, dir: 'to-device' })).toEqual({ dmaAddr: '0x80100000', size: 0x40 });
    const st = await s.dmaState('dev1');
    expect(st.mappings.map((m) => [m.dmaAddr, m.owner, m.bounce])).toEqual([['0x80100000', 'device', { paddr: '0x80100000', slots: 1 }]]);
    expect(text(await s.readMemory('0x80100000', 5, { view: 'ram' }))).toBe('hello');
    expect(await s.cacheFlush('0x80100000', 0x40)).toEqual({ lines: 2 });

    await expect.poll(() => events.length).toBe(6);
    sub.close();
    expect(events.filter(isCoherencyEvent).map(({ check, device, paddr, size, dmaAddr }) => ({ check, device, paddr, size, dmaAddr }))).toEqual([
      { check: 'device-read-stale', device: 'dev0', paddr: '0x80000000', size: 4, dmaAddr: undefined },
      { check: 'stale-cpu-read', device: 'dev0', paddr: '0x80000040', size: 4, dmaAddr: undefined },
    ]);
    expect(events.filter(isCacheEvent).map(({ action, paddr, size, lines }) => [action, paddr, size, lines])).toEqual([
      ['clean', '0x80000000', 4, 1],
      ['invalidate', '0x80000040', 4, 1],
      ['flush', '0x80100000', 0x40, 2],
    ]);
    expect(events.filter(isBounceEvent).map(({ device, dir, from, to, bytes, dmaAddr }) => ({ device, dir, from, to, bytes, dmaAddr }))).toEqual([
      { device: 'dev1', dir: 'to-device', from: '0x82000000', to: '0x80100000', bytes: 0x40, dmaAddr: '0x80100000' },
    ]);
  });
});
