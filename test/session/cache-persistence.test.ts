import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { build } from '../../src/server/app.js';

type App = Awaited<ReturnType<typeof build>>;
const dirs: string[] = [];
const apps: App[] = [];
afterEach(async () => {
  for (const a of apps.splice(0)) await a.close().catch(() => {});
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const b64 = (s: string) => Buffer.from(s).toString('base64');

/**
 * Issue 14, "snapshots and restore include them": a session with a CPU cache and a bounce pool, compacted into a
 * snapshot and then journaled further, comes back after a restart with the same lines in the same LRU order, the
 * same ownership and bounce slots; the next eviction and the pending bounce copy behave as before the restart.
 */
describe('a compacted non-coherent session survives a restart', () => {
  it('cache lines and LRU order, ownership, bounce slots and counts come back; eviction and unmap go on from there', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'iommud-cache-'));
    dirs.push(dir);
    const a = await build({ dataDir: dir, compactEvery: 0 });
    apps.push(a);
    const s = (await a.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'tiny', cpuCache: { lineSize: 32, lines: 4 }, bounce: { paddr: '0x80100000', size: 0x1000 } } })).json();
    const on = (app: App) => (method: string, url: string, payload?: object | string) =>
      app.inject({
        method: method as 'POST',
        url: `/v1/sessions/${s.id}${url}`,
        headers: { authorization: `Bearer ${s.token}`, ...(typeof payload === 'string' ? { 'content-type': 'application/octet-stream' } : {}) },
        ...(payload !== undefined ? { payload: typeof payload === 'string' ? Buffer.from(payload) : payload } : {}),
      });
    let call = on(a);
    for (const [at, v] of [['0x80000000', 'A'], ['0x80000020', 'B'], ['0x80000040', 'C']] as const) expect((await call('PUT', `/memory?paddr=${at}`, v)).statusCode).toBe(204);
    expect((await call('GET', '/memory?paddr=0x80000000&size=1')).statusCode).toBe(200); // 0x80000000 becomes most recently used
    expect((await call('PATCH', '/devices/dev0/dma', { mode: 'direct', dmaLimit: '0x80ffffff' })).statusCode).toBe(200);
    expect((await call('POST', '/devices/dev0/dma/map', { paddr: '0x82000000', size: 0x40, dir: 'from-device' })).json()).toEqual({ dmaAddr: '0x80100000', size: 0x40 });
    expect((await call('POST', '/devices/dev0/access', { iova: '0x80100000', access: 'write', data: b64('DMA') })).statusCode).toBe(200);
    a.registry.get(s.id)!.compact();
    expect((await call('PUT', '/memory?paddr=0x80000060', 'D')).statusCode).toBe(204); // after the snapshot: the journal's tail
    const before = a.registry.get(s.id)!;
    const state = JSON.parse(JSON.stringify({ cache: before.cache!.snapshot(), bounce: before.bounce!.snapshot(), dma: before.dma.snapshot(), counts: [...before.coherencyCounts] }));
    expect(state.cache.lines.map((l: { addr: number; dirty: boolean }) => [l.addr.toString(16), l.dirty])).toEqual([
      ['80000020', true],
      ['80000040', true],
      ['80000000', true],
      ['80000060', true],
    ]);
    await a.close();

    const b = await build({ dataDir: dir });
    apps.push(b);
    const after = b.registry.get(s.id)!;
    expect(JSON.parse(JSON.stringify({ cache: after.cache!.snapshot(), bounce: after.bounce!.snapshot(), dma: after.dma.snapshot(), counts: [...after.coherencyCounts] }))).toEqual(state);
    call = on(b);
    expect((await call('GET', '/devices/dev0/dma')).json().mappings).toMatchObject([{ dmaAddr: '0x80100000', owner: 'device', bounce: { paddr: '0x80100000', slots: 1 } }]);

    // A fifth line evicts the least recently used one, 0x80000020, and writes its 'B' back.
    expect((await call('PUT', '/memory?paddr=0x80000080', 'E')).statusCode).toBe(204);
    expect((await call('GET', '/memory?paddr=0x80000020&size=1&view=ram')).body).toBe('B');
    expect((await call('GET', '/cache')).json().entries).toEqual(['0x80000000', '0x80000040', '0x80000060', '0x80000080'].map((paddr) => ({ paddr, dirty: true })));
    // The unmap copies what the device wrote into the slot back to the buffer (a CPU copy through the cache).
    expect((await call('POST', '/devices/dev0/dma/unmap', { dmaAddr: '0x80100000', size: 0x40, dir: 'from-device' })).statusCode).toBe(204);
    expect((await call('GET', '/memory?paddr=0x82000000&size=3')).body).toBe('DMA');
    expect(after.bounce!.used).toBe(0);
  });
});
