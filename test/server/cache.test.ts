import { afterEach, describe, expect, it } from 'vitest';
import type { EventOf, EventType } from '../../src/events/types.js';
import { client, type Client } from '../support/server.js';

/** API.md v1.1 "CPU caches and non-coherent DMA" and "Bounce buffers", scenario by scenario, over HTTP. */
const B = 0x80000000;
const h = (n: number) => `0x${n.toString(16)}`;
const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

let c: Client;
afterEach(() => c?.app.close());

async function session(extra: Record<string, unknown>): Promise<Client> {
  c = await client('tiny', {}, extra);
  return c;
}
const put = (addr: number, data: Buffer | string) =>
  c.app.inject({ method: 'PUT', url: `/v1/sessions/${c.sid}/memory?paddr=${h(addr)}`, headers: { authorization: `Bearer ${c.token}`, 'content-type': 'application/octet-stream' }, payload: Buffer.from(data) });
const get = async (addr: number, size: number, view?: 'ram') =>
  (await c.app.inject({ method: 'GET', url: `/v1/sessions/${c.sid}/memory?paddr=${h(addr)}&size=${size}${view ? '&view=ram' : ''}`, headers: { authorization: `Bearer ${c.token}` } })).rawPayload;
const events = <T extends EventType>(type: T) =>
  c.app.registry.get(c.sid)!.bus.replay(0).events.filter((e): e is EventOf<T> => e.type === type).map(({ seq: _s, time: _t, by: _b, ...rest }) => rest);
const devWrite = (dev: string, iova: number, data: string) => c.call('POST', `/devices/${dev}/access`, { iova: h(iova), access: 'write', data: b64(data) });
const devRead = async (dev: string, iova: number, size: number) => Buffer.from((await c.call('POST', `/devices/${dev}/access`, { iova: h(iova), access: 'read', size })).body.data, 'base64').toString();

describe('cpuCache settings', () => {
  it('refuses a bad lineSize, lines or coherent device (BAD_REQUEST, details name the field); version lists the capabilities', async () => {
    c = await client('tiny');
    for (const [cpuCache, field] of [[{ lineSize: 48 }, 'cpuCache.lineSize'], [{ lines: 0 }, 'cpuCache.lines'], [{ lines: 65537 }, 'cpuCache.lines'], [{ coherent: ['gpu'] }, 'cpuCache.coherent']] as const) {
      const r = await c.call('POST', '/v1/sessions', { profile: 'tiny', cpuCache });
      expect([r.status, r.body.error.code, r.body.error.details.field]).toEqual([400, 'BAD_REQUEST', field]);
    }
    expect((await c.call('GET', '/v1/version')).body.capabilities).toEqual(expect.arrayContaining(['cpu-cache', 'bounce']));
  });

  it('without cpuCache: the cache is empty, maintenance touches nothing, loads are not commands', async () => {
    c = await client('tiny');
    expect((await c.call('GET', '/cache')).body).toEqual({ lineSize: 0, lines: 0, used: 0, entries: [] });
    expect((await c.call('POST', '/cache/flush', { paddr: h(B), size: 64 })).body).toEqual({ lines: 0 });
    const rev = (await c.call('GET', '/')).body.revision;
    await get(B, 16);
    const s = (await c.call('GET', '/')).body;
    expect([s.revision, s.cpuCache, s.bounce, s.coherency]).toEqual([rev, null, null, { 'stale-cpu-read': 0, 'device-read-stale': 0, 'lost-device-write': 0, 'cpu-access-device-owned': 0 }]);
  });
});

describe('the CPU cache', () => {
  it('a store is write-allocate and dirty; view=ram sees RAM; clean writes back; a load is a command', async () => {
    await session({ cpuCache: { lineSize: 32, lines: 4 } });
    expect((await put(B + 0x24, 'abc')).statusCode).toBe(204);
    expect((await c.call('GET', '/cache')).body).toEqual({ lineSize: 32, lines: 4, used: 1, entries: [{ paddr: h(B + 0x20), dirty: true }] });
    expect((await get(B + 0x24, 3, 'ram')).toString('hex')).toBe('000000');
    const rev = (await c.call('GET', '/')).body.revision;
    expect((await get(B + 0x24, 3)).toString()).toBe('abc');
    expect((await c.call('GET', '/')).body.revision).toBe(rev + 1);
    expect((await c.call('POST', '/cache/clean', { paddr: h(B + 0x30), size: 1 })).body).toEqual({ lines: 1 });
    expect((await get(B + 0x24, 3, 'ram')).toString()).toBe('abc');
    expect((await c.call('GET', `/cache?paddr=${h(B)}&size=0x100`)).body.entries).toEqual([{ paddr: h(B + 0x20), dirty: false }]);
  });

  it('invalidate drops dirty data (as on hardware); flush writes back then drops', async () => {
    await session({ cpuCache: { lineSize: 64, lines: 4 } });
    await put(B, 'lost');
    await put(B + 0x40, 'kept');
    expect((await c.call('POST', '/cache/invalidate', { paddr: h(B + 8), size: 8 })).body).toEqual({ lines: 1 });
    expect((await c.call('POST', '/cache/flush', { paddr: h(B + 0x40), size: 0x40 })).body).toEqual({ lines: 1 });
    expect((await c.call('GET', '/cache')).body.used).toBe(0);
    expect((await get(B, 4)).toString('hex')).toBe('00000000');
    expect((await get(B + 0x40, 4, 'ram')).toString()).toBe('kept');
  });

  it('LRU: the least recently used line is evicted and written back when dirty', async () => {
    await session({ cpuCache: { lineSize: 32, lines: 2 } });
    await put(B, 'A');
    await put(B + 0x20, 'B');
    await get(B, 1); // B+0x20 is now the oldest
    await put(B + 0x40, 'C');
    expect((await c.call('GET', '/cache')).body.entries).toEqual([{ paddr: h(B), dirty: true }, { paddr: h(B + 0x40), dirty: true }]);
    expect((await get(B + 0x20, 1, 'ram')).toString()).toBe('B');
  });

  it('a new buffer drops the cached lines of its range and reads as zeros', async () => {
    await session({ cpuCache: {} });
    await put(B + 0x10, 'old data');
    expect((await c.call('POST', '/buffers', { size: 0x1000 })).body.paddr).toBe(h(B));
    expect((await c.call('GET', '/cache')).body.used).toBe(0);
    expect((await get(B + 0x10, 8)).toString('hex')).toBe('0000000000000000');
  });
});

describe('the four checks (events once per line and cause; the data behaves as hardware would)', () => {
  it('stale-cpu-read: a device write beneath a cached line; the CPU reads the stale bytes until an invalidate', async () => {
    await session({ cpuCache: { lineSize: 32, lines: 16 } });
    await put(B, 'cpu!');
    await c.call('POST', '/cache/clean', { paddr: h(B), size: 32 });
    await devWrite('dev0', B + 4, 'DEV');
    expect((await get(B + 4, 3)).toString('hex')).toBe('000000');
    expect((await get(B + 4, 3)).toString('hex')).toBe('000000');
    expect(events('coherency')).toEqual([{ type: 'coherency', check: 'stale-cpu-read', device: 'dev0', paddr: h(B + 4), size: 3 }]);
    await c.call('POST', '/cache/invalidate', { paddr: h(B), size: 32 });
    expect((await get(B, 7)).toString()).toBe('cpu!DEV');
    expect((await c.call('GET', '/')).body.coherency['stale-cpu-read']).toBe(1);
  });

  it('device-read-stale: the CPU holds newer dirty bytes; the device reads the old RAM bytes', async () => {
    await session({ cpuCache: {} });
    await put(B + 0x30, 'new');
    expect(await devRead('dev1', B + 0x2e, 6)).toBe('\0\0\0\0\0\0');
    expect(await devRead('dev1', B + 0x2e, 6)).toBe('\0\0\0\0\0\0');
    expect(events('coherency')).toEqual([{ type: 'coherency', check: 'device-read-stale', device: 'dev1', paddr: h(B + 0x30), size: 3 }]);
    await c.call('POST', '/cache/clean', { paddr: h(B + 0x30), size: 3 });
    expect(await devRead('dev1', B + 0x30, 3)).toBe('new');
  });

  it('lost-device-write: writing back a dirty line overwrites what a device wrote after the fill', async () => {
    await session({ cpuCache: {} });
    await put(B, 'c');
    await devWrite('dev0', B + 8, 'device');
    expect((await c.call('POST', '/cache/clean', { paddr: h(B), size: 1 })).body).toEqual({ lines: 1 });
    expect((await get(B + 8, 6, 'ram')).toString('hex')).toBe('000000000000');
    expect(events('coherency')).toEqual([{ type: 'coherency', check: 'lost-device-write', device: 'dev0', paddr: h(B + 8), size: 6 }]);
  });

  it('coherent devices snoop: their reads see dirty lines, their writes update cached copies; no events', async () => {
    await session({ cpuCache: { coherent: ['dev0'] } });
    await put(B, 'dirty');
    expect(await devRead('dev0', B, 5)).toBe('dirty');
    await devWrite('dev0', B + 1, 'IRT');
    expect((await get(B, 5)).toString()).toBe('dIRTy');
    expect((await get(B, 5, 'ram')).toString()).toBe('\0IRT\0');
    expect(events('coherency')).toEqual([]);
  });
});

describe('the DMA API does ARM dma-mapping maintenance', () => {
  it('to-device map cleans; the device reads what the CPU wrote; cpu-access-device-owned while the device owns it', async () => {
    await session({ cpuCache: {} });
    await c.call('POST', '/buffers', { size: 0x1000 });
    await put(B, 'tx packet');
    const m = (await c.call('POST', '/devices/dev0/dma/map', { paddr: h(B), size: 0x100, dir: 'to-device' })).body;
    expect(m).toEqual({ dmaAddr: '0xfffff000', size: 0x100 });
    expect((await c.call('GET', '/cache')).body.entries).toEqual([{ paddr: h(B), dirty: false }]);
    expect(await devRead('dev0', 0xfffff000, 9)).toBe('tx packet');
    expect((await c.call('GET', '/devices/dev0/dma')).body.mappings[0]).toMatchObject({ owner: 'device', bounce: null });
    await get(B + 0x40, 0x40);
    await get(B + 0x40, 0x40);
    expect(events('coherency')).toEqual([
      { type: 'coherency', check: 'cpu-access-device-owned', device: 'dev0', paddr: h(B + 0x40), size: 0x40, dmaAddr: '0xfffff040' },
    ]);
    await c.call('POST', '/devices/dev0/dma/sync', { dmaAddr: '0xfffff000', size: 0x100, for: 'cpu' });
    await get(B + 0x80, 0x20);
    expect(events('coherency')).toHaveLength(1);
  });

  it('from-device: partial edge lines are cleaned before the invalidate, so neighbours survive; unmap invalidates', async () => {
    await session({ cpuCache: { lineSize: 32 } });
    await put(B + 0x00, 'neighbour');
    await put(B + 0x30, 'tail');
    await put(B + 0x10, 'stale rx');
    await c.call('POST', '/devices/dev0/dma/map', { paddr: h(B + 0x10), size: 0x20, dir: 'from-device' });
    expect((await c.call('GET', '/cache')).body.used).toBe(0);
    expect((await get(B, 9, 'ram')).toString()).toBe('neighbour');
    expect((await get(B + 0x30, 4, 'ram')).toString()).toBe('tail');
    await devWrite('dev0', 0xfffff010, 'received');
    await c.call('POST', '/devices/dev0/dma/unmap', { dmaAddr: '0xfffff010', size: 0x20, dir: 'from-device' });
    expect((await get(B + 0x10, 8)).toString()).toBe('received');
    expect(events('coherency')).toEqual([]);
  });

  it('a missing dma_sync_single_for_cpu: the CPU reads stale data and stale-cpu-read names the mapping', async () => {
    await session({ cpuCache: {} });
    await c.call('POST', '/devices/dev0/dma/map', { paddr: h(B), size: 0x40, dir: 'from-device' });
    await get(B, 3); // the driver polls the ring entry before the device wrote it: the line is filled
    await devWrite('dev0', 0xfffff000, 'pkt');
    // no sync for cpu: the line is stale, and the CPU reads a buffer the device owns
    expect((await get(B, 3)).toString('hex')).toBe('000000');
    expect(events('coherency')).toEqual([
      { type: 'coherency', check: 'cpu-access-device-owned', device: 'dev0', paddr: h(B), size: 3, dmaAddr: '0xfffff000' },
      { type: 'coherency', check: 'stale-cpu-read', device: 'dev0', paddr: h(B), size: 3, dmaAddr: '0xfffff000' },
    ]);
  });

  it('coherent devices get no maintenance; the ownership check still applies', async () => {
    await session({ cpuCache: { coherent: ['dev0'] } });
    await put(B, 'x');
    await c.call('POST', '/devices/dev0/dma/map', { paddr: h(B), size: 0x40, dir: 'from-device' });
    expect((await c.call('GET', '/cache')).body.entries).toEqual([{ paddr: h(B), dirty: true }]);
    await get(B, 1);
    expect(events('coherency').map((e) => e.check)).toEqual(['cpu-access-device-owned']);
  });
});

describe('bounce buffers (swiotlb) and direct-mode DMA', () => {
  const POOL = B + 0x100000;
  it('validates the pool: UNALIGNED, OUT_OF_RANGE, BAD_REQUEST over the page-table pool', async () => {
    c = await client('tiny');
    const code = async (bounce: unknown) => (await c.call('POST', '/v1/sessions', { profile: 'tiny', bounce })).body.error?.code;
    expect(await code({ paddr: h(POOL + 0x400), size: 0x800 })).toBe('UNALIGNED');
    expect(await code({ paddr: h(POOL), size: 0x900 })).toBe('UNALIGNED');
    expect(await code({ paddr: '0x10000000', size: 0x800 })).toBe('OUT_OF_RANGE');
    expect(await code({ paddr: h(POOL), size: 0x4000800 })).toBe('OUT_OF_RANGE');
    expect(await code({ paddr: '0x83e00000', size: 0x800 })).toBe('BAD_REQUEST');
  });

  it('map above the mask bounces: first fit slots, copies by direction, partial sync by containment, events, view, metrics', async () => {
    await session({ cpuCache: {}, bounce: { paddr: h(POOL), size: 0x8000 } });
    const st = await c.call('PATCH', '/devices/dev0/dma', { mode: 'direct', dmaLimit: '0x80ffffff' });
    expect(st.body).toMatchObject({ mode: 'direct', domain: null, dmaLimit: '0x80ffffff' });
    const HIGH = 0x82000000;
    await put(HIGH, 'original bytes');
    // below the mask: no bounce, the DMA address is the physical one
    expect((await c.call('POST', '/devices/dev0/dma/map', { paddr: h(B), size: 0x100, dir: 'to-device' })).body).toEqual({ dmaAddr: h(B), size: 0x100 });
    const m = (await c.call('POST', '/devices/dev0/dma/map', { paddr: h(HIGH), size: 0x1800, dir: 'bidirectional' })).body;
    expect(m).toEqual({ dmaAddr: h(POOL), size: 0x1800 });
    expect((await c.call('GET', '/devices/dev0/dma')).body.mappings[1]).toMatchObject({ dmaAddr: h(POOL), bounce: { paddr: h(POOL), slots: 3 } });
    expect(await devRead('dev0', POOL, 14)).toBe('original bytes');
    // the device writes into the slots; a partial sync in the middle of the mapping copies only its range
    await devWrite('dev0', POOL + 0x1000, 'from device');
    await c.call('POST', '/devices/dev0/dma/sync', { dmaAddr: h(POOL + 0x800), offset: 0x800, size: 0x10, for: 'cpu' });
    expect((await get(HIGH + 0x1000, 11)).toString()).toBe('from device');
    expect(events('bounce')).toEqual([
      { type: 'bounce', device: 'dev0', dir: 'bidirectional', from: h(HIGH), to: h(POOL), bytes: 0x1800, dmaAddr: h(POOL) },
      { type: 'bounce', device: 'dev0', dir: 'bidirectional', from: h(POOL + 0x1000), to: h(HIGH + 0x1000), bytes: 0x10, dmaAddr: h(POOL) },
    ]);
    // the next mapping takes the first free slot after it
    expect((await c.call('POST', '/devices/dev0/dma/map', { paddr: h(HIGH + 0x10000), size: 0x10, dir: 'from-device' })).body.dmaAddr).toBe(h(POOL + 0x1800));
    const busy = await c.call('PATCH', '/devices/dev0/dma', { mode: 'iommu' });
    expect([busy.status, busy.body.error.code]).toEqual([409, 'DEVICE_BUSY']);
    expect((await c.call('POST', '/devices/dev0/dma/unmap', { dmaAddr: h(POOL), size: 0x1800, dir: 'bidirectional' })).status).toBe(204);
    expect((await c.call('GET', '/')).body.bounce).toEqual({ paddr: h(POOL), size: 0x8000, slots: 16, used: 1 });
    const metrics = (await c.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toContain(`iommud_bounce_bytes_total ${0x1800 + 0x10 + 0x1800}`);
    // buffers never come from the pool
    expect((await c.call('POST', '/buffers', { size: 0x100000 })).body.paddr).toBe(h(B));
    expect((await c.call('POST', '/buffers', { size: 0x1000 })).body.paddr).toBe(h(POOL + 0x8000));
  });

  it('NO_SPACE reason bounce: no pool, or no room; DOMAIN_TYPE with an IOMMU-API domain attached', async () => {
    await session({ bounce: { paddr: h(POOL), size: 0x1000 } });
    await c.call('PATCH', '/devices/dev0/dma', { mode: 'direct', dmaLimit: '0x80ffffff' });
    const full = await c.call('POST', '/devices/dev0/dma/map', { paddr: '0x82000000', size: 0x1001, dir: 'to-device' });
    expect([full.status, full.body.error.code, full.body.error.details.reason]).toEqual([507, 'NO_SPACE', 'bounce']);
    const d = (await c.call('POST', '/domains', {})).body.id;
    await c.call('POST', `/domains/${d}/attach`, { device: 'dev1' });
    expect((await c.call('PATCH', '/devices/dev1/dma', { mode: 'direct' })).body.error.code).toBe('DOMAIN_TYPE');
    c.app.close();
    await session({});
    await c.call('PATCH', '/devices/dev0/dma', { mode: 'direct', dmaLimit: '0x80ffffff' });
    const none = await c.call('POST', '/devices/dev0/dma/map', { paddr: '0x82000000', size: 0x10, dir: 'to-device' });
    expect([none.status, none.body.error.details.reason]).toEqual([507, 'bounce']);
  });
});

describe('traces and snapshots carry the cache, ownership and the bounce pool', () => {
  it('a trace replays into an identical cache, counts and bounce state', async () => {
    await session({ cpuCache: { lineSize: 64, lines: 8, coherent: ['dev1'] }, bounce: { paddr: h(B + 0x100000), size: 0x4000 } });
    await put(B, 'hello');
    await c.call('PATCH', '/devices/dev0/dma', { mode: 'direct', dmaLimit: '0x80ffffff' });
    await c.call('POST', '/devices/dev0/dma/map', { paddr: '0x82000000', size: 0x900, dir: 'from-device' });
    await devWrite('dev0', B + 0x100000, 'bounced');
    await get(0x82000000, 4);
    const trace = (await c.app.inject({ method: 'GET', url: `/v1/sessions/${c.sid}/trace`, headers: { authorization: `Bearer ${c.token}` } })).body;
    expect(JSON.parse(trace.split('\n')[0]).session).toMatchObject({ cpuCache: { lineSize: 64, lines: 8, coherent: ['dev1'] }, bounce: { paddr: B + 0x100000, size: 0x4000 } });
    const copy = await c.call('POST', '/v1/sessions', { trace });
    const a = c.app.registry.get(c.sid)!;
    const b = c.app.registry.get(copy.body.id)!;
    expect(b.cache!.snapshot()).toEqual(a.cache!.snapshot());
    expect(b.bounce!.snapshot()).toEqual(a.bounce!.snapshot());
    expect(b.dma.snapshot()).toEqual(a.dma.snapshot());
    expect([...b.coherencyCounts]).toEqual([...a.coherencyCounts]);
  });
});
