import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, type Client } from '../support/server.js';

describe('memory, buffers and the DMA API over HTTP', () => {
  let c: Client;
  beforeAll(async () => {
    c = await client();
  });
  afterAll(() => c.app.close());

  const raw = (method: 'GET' | 'PUT', url: string, payload?: Buffer) =>
    c.app.inject({
      method,
      url: `/v1/sessions/${c.sid}${url}`,
      headers: { authorization: `Bearer ${c.token}`, ...(payload ? { 'content-type': 'application/octet-stream' } : {}) },
      ...(payload ? { payload } : {}),
    });

  it('buffers: SMI first, aligned; pool usage in the session; delete coalesces', async () => {
    const a = await c.call('POST', '/buffers', { size: '0x100000' });
    expect([a.status, a.body]).toEqual([201, { paddr: '0x38000000', size: 0x100000, pool: 'smi' }]);
    const b = await c.call('POST', '/buffers', { size: 4096, pools: ['ebi1'] });
    expect(b.body).toEqual({ paddr: '0x40000000', size: 4096, pool: 'ebi1' });
    expect((await c.call('GET', '/')).body.pools).toEqual([{ name: 'smi', used: 0x100000, free: 0x4000000 - 0x100000 }, { name: 'ebi1', used: 4096, free: 0x1f000000 - 4096 }]);
    expect((await c.call('DELETE', '/buffers/0x40000000')).status).toBe(204);
    expect((await c.call('DELETE', '/buffers/0x40000000')).body.error.code).toBe('NOT_FOUND');
    expect((await c.call('POST', '/buffers', { size: '0x20000000' })).body.error.code).toBe('NO_SPACE');
  });

  it('memory: CPU writes, device reads through the SMMU; device writes, CPU reads', async () => {
    expect((await raw('PUT', '/memory?paddr=0x40000000', Buffer.from('hello SMMU'))).statusCode).toBe(204);
    const d = (await c.call('POST', '/domains', {})).body.id;
    await c.call('POST', `/domains/${d}/attach`, { device: 'vfe_imgwr' });
    await c.call('POST', `/domains/${d}/map`, { iova: '0x10000000', paddr: '0x40000000', size: '0x2000', prot: ['read', 'write'] });
    const r = await c.call('POST', '/devices/vfe_imgwr/access', { iova: '0x10000000', access: 'read', size: 10 });
    expect(Buffer.from(r.body.data, 'base64').toString()).toBe('hello SMMU');
    const w = await c.call('POST', '/devices/vfe_imgwr/access', { iova: '0x10000ffe', access: 'write', data: Buffer.from('abcd').toString('base64') });
    expect(w.body).toMatchObject({ outcome: 'ok', paddr: '0x40000ffe', segments: [{ iova: '0x10000ffe', paddr: '0x40000ffe', size: 2 }, { iova: '0x10001000', paddr: '0x40001000', size: 2 }] });
    const back = await raw('GET', '/memory?paddr=0x40000ffe&size=4');
    expect(back.headers['content-type']).toBe('application/octet-stream');
    expect(back.rawPayload.toString()).toBe('abcd');
    expect((await raw('GET', '/memory?paddr=0x10000000&size=4')).json().error.code).toBe('OUT_OF_RANGE');
    expect((await raw('GET', '/memory?paddr=0x40000000&size=0x400001')).json().error.code).toBe('PAYLOAD_TOO_LARGE');
    expect((await raw('PUT', '/memory?paddr=0x40000000', Buffer.alloc(4 * 1024 * 1024 + 1))).json().error.code).toBe('PAYLOAD_TOO_LARGE');
    // A write through an unmapped page moves nothing at all.
    await c.call('POST', '/devices/vfe_imgwr/access', { iova: '0x10001ffe', access: 'write', data: Buffer.from('zzzz').toString('base64') });
    expect((await raw('GET', '/memory?paddr=0x40001ffe&size=2')).rawPayload).toEqual(Buffer.alloc(2));
  });

  it('DMA map, sync, unmap with exact addresses; DMA_DEBUG refusals', async () => {
    const m = await c.call('POST', '/devices/rot_src/dma/map', { paddr: '0x40100010', size: 100, dir: 'to-device' });
    expect(m.body).toEqual({ dmaAddr: '0xfffff010', size: 100 });
    const sg = await c.call('POST', '/devices/rot_src/dma/map-sg', { segments: [{ paddr: '0x40200000', size: 4096 }, { paddr: '0x40300000', size: 4096 }], dir: 'to-device' });
    expect(sg.body).toEqual({ dmaAddr: '0xffffc000', segments: [{ dmaAddr: '0xffffc000', size: 4096 }, { dmaAddr: '0xffffd000', size: 4096 }] }); // 2 pages, 2-page aligned
    expect((await c.call('POST', '/devices/rot_src/dma/sync', { dmaAddr: '0xfffff010', size: 50, offset: 10, for: 'cpu' })).status).toBe(204);
    const bad = await c.call('POST', '/devices/rot_src/dma/unmap', { dmaAddr: '0xfffff010', size: 99, dir: 'to-device' });
    expect([bad.status, bad.body.error.code, bad.body.error.details.check]).toEqual([409, 'DMA_DEBUG', 'size-mismatch']);
    expect((await c.call('POST', '/devices/rot_src/dma/unmap', { dmaAddr: '0xfffff010', size: 100, dir: 'to-device' })).status).toBe(204);
    const st = (await c.call('GET', '/devices/rot_src/dma')).body;
    expect(st).toMatchObject({ device: 'rot_src', flushPolicy: 'strict', mappings: [{ dmaAddr: '0xffffc000', size: 8192, dir: 'to-device' }] });
    const dom = (await c.call('GET', `/domains/${st.domain}`)).body;
    expect(dom).toMatchObject({ type: 'dma', attached: ['rot_src'] });
    expect((await c.call('POST', `/domains/${st.domain}/map`, { iova: 0, paddr: 0, size: 4096, prot: ['read'] })).body.error.code).toBe('DOMAIN_TYPE');
    expect((await c.call('GET', '/devices/vpe_src/dma')).body).toEqual({ device: 'vpe_src', mode: 'iommu', domain: null, flushPolicy: 'strict', dmaLimit: '0xffffffff', pendingFlush: 0, mappings: [] });
  });
});
