import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, type Client } from '../support/server.js';

/** A mixed SoC: a camera on an msm SMMU, a DSP on an OMAP MMU, 2D and display on a GART. */
export const MIXED = {
  name: 'mixed',
  smmus: [
    { name: 'cam_smmu', base: '0x07900000', banks: 2, contexts: [{ index: 0, name: 'camera', mids: [0] }] },
    { name: 'mmu_dsp', family: 'omap', base: '0x4a066000', contexts: [{ index: 0, name: 'dsp', mids: [0] }] },
    { name: 'gart', family: 'gart', base: '0x7000f000', aperture: { base: '0x58000000', size: '0x2000000' }, contexts: [{ index: 0, name: 'gr2d', mids: [0x11, 0x28] }, { index: 0, name: 'display', mids: [0, 0] }] },
  ],
  memory: [{ name: 'ram', base: '0x80000000', size: '0x4000000' }, { name: 'low', base: '0x10000000', size: '0x4000000' }],
  pagetablePool: { base: '0x83e00000', size: '0x200000' },
};

describe('IOMMU families over HTTP (mixed inline topology)', () => {
  let c: Client;
  beforeAll(async () => {
    c = await client(MIXED);
  });
  afterAll(() => c.app.close());

  it('version lists the families capability; smmus and contexts show their family, registers and TLB view', async () => {
    expect((await c.call('GET', '/v1/version')).body.capabilities).toContain('families');
    const smmus = (await c.call('GET', '/smmus')).body;
    expect(smmus.map((s: { name: string; family: string; banks: number }) => [s.name, s.family, s.banks])).toEqual([['cam_smmu', 'msm', 2], ['mmu_dsp', 'omap', 1], ['gart', 'gart', 1]]);
    expect(smmus.map((s: { tlb: { capacity: number } }) => s.tlb.capacity)).toEqual([128, 32, 0]);
    expect(smmus[1].details).toEqual({ lock: { base: 0, victim: 0 }, tlb: [] });
    expect(smmus[2].details).toEqual({ aperture: { base: '0x58000000', size: 0x2000000 }, entries: 8192, validEntries: 0, activeDomain: null });
    const dsp = (await c.call('GET', '/smmus/mmu_dsp/contexts/dsp')).body;
    expect(dsp).toMatchObject({ family: 'omap', device: 'dsp', enabled: false, faultMode: 'terminate', registers: { REVISION: '0x21', TTB: '0x0', CNTL: '0x0', IRQSTATUS: '0x0' } });
    const gr2d = (await c.call('GET', '/smmus/gart/contexts/gr2d')).body;
    expect(gr2d).toMatchObject({ family: 'gart', index: 0, mids: [0x11, 0x28], enabled: true, registers: { GART_CONFIG: '0x1', MC_INTMASK: '0x1c0' } });
  });

  it('domains: msm by default, for: device picks the family; attaching across families is DOMAIN_TYPE', async () => {
    const d = (await c.call('POST', '/domains', {})).body;
    expect(d).toMatchObject({ family: 'msm', ttbr0: '0x83e00000', pgsizes: [4096, 65536, 1048576, 16777216] });
    const bad = await c.call('POST', `/domains/${d.id}/attach`, { device: 'dsp' });
    expect(bad.status).toBe(409);
    expect(bad.body.error).toMatchObject({ code: 'DOMAIN_TYPE', details: { domainFamily: 'msm', deviceFamily: 'omap' } });
    const g = (await c.call('POST', '/domains', { for: 'gr2d' })).body;
    expect(g).toMatchObject({ family: 'gart', pgsizes: [4096] });
    expect((await c.call('POST', '/domains', { for: 'gr2d', pgsizes: [65536] })).body.error.code).toBe('BAD_REQUEST');
    expect((await c.call('POST', '/domains', { for: 'nobody' })).status).toBe(404);
    await c.call('DELETE', `/domains/${d.id}`);
    await c.call('DELETE', `/domains/${g.id}`);
  });

  it('omap: map, pagetable in OMAP format, access miss then hit, fault with IRQSTATUS and FAULT_AD, clear-fault', async () => {
    const d = (await c.call('POST', '/domains', { for: 'dsp' })).body;
    expect(d.family).toBe('omap');
    expect((await c.call('POST', `/domains/${d.id}/attach`, { device: 'dsp' })).body.attached).toEqual(['dsp']);
    expect((await c.call('POST', `/domains/${d.id}/map`, { iova: '0x20000000', paddr: '0x80100000', size: '0x100000', prot: ['read'] })).body.pages['1M']).toBe(1);
    const pt = (await c.call('GET', `/domains/${d.id}/pagetable`)).body;
    expect(pt).toEqual({ family: 'omap', ttbr0: d.ttbr0, l1: [{ index: 512, desc: '0x80100002' }], l2: [] });
    expect((await c.call('GET', `/domains/${d.id}/iova-to-phys/0x20000010`)).body).toEqual({ iova: '0x20000010', paddr: '0x80100010', pageSize: 0x100000, prot: ['read', 'write'] });
    expect((await c.call('POST', '/devices/dsp/access', { iova: '0x20000010', access: 'write' })).body).toEqual({ outcome: 'ok', paddr: '0x80100010', tlb: 'miss' });
    expect((await c.call('POST', '/devices/dsp/access', { iova: '0x20000020', access: 'read' })).body).toEqual({ outcome: 'ok', paddr: '0x80100020', tlb: 'hit' });
    const f = (await c.call('POST', '/devices/dsp/access', { iova: '0x30000000', access: 'read' })).body;
    expect(f.fault).toMatchObject({ family: 'omap', kind: 'translation', flags: 0, irqstatus: '0x2', irqstatusBits: ['TRANSLATIONFAULT'], faultAd: '0x30000000' });
    expect((await c.call('GET', '/smmus/mmu_dsp/mmio/0x48')).body).toEqual({ offset: '0x48', register: 'FAULT_AD', value: '0x30000000' });
    expect((await c.call('POST', '/smmus/mmu_dsp/contexts/dsp/clear-fault', {})).body.registers.IRQSTATUS).toBe('0x0');
    expect((await c.call('POST', '/smmus/mmu_dsp/contexts/0/inject-fault', { kind: 'external' })).body.error.code).toBe('BAD_REQUEST');
    expect((await c.call('PATCH', '/smmus/mmu_dsp/contexts/0', { faultMode: 'stall' })).body.error.code).toBe('BAD_REQUEST');
    // Offsets in details are hex strings on every family, as the msm window gives them (they were numbers here).
    const outside = await c.call('GET', '/smmus/mmu_dsp/mmio/0x100');
    expect([outside.status, outside.body.error]).toEqual([400, { code: 'BAD_REQUEST', message: 'offset 0x100: outside the 0x100-byte register window', details: { offset: '0x100' } }]);
    expect((await c.call('GET', '/smmus/mmu_dsp/mmio/0x46')).body.error.details).toEqual({ offset: '0x46' });
    await c.call('POST', `/domains/${d.id}/detach`, { device: 'dsp' });
  });

  it('gart: DMA API IOVAs from the aperture, pagetable entries, faults with the MC registers, master access refused', async () => {
    const m = (await c.call('POST', '/devices/gr2d/dma/map', { paddr: '0x10200000', size: 0x1000, dir: 'to-device' })).body;
    expect(m).toEqual({ dmaAddr: '0x59fff000', size: 0x1000 });
    const dom = (await c.call('GET', '/domains')).body.find((x: { family: string; type: string }) => x.family === 'gart' && x.type === 'dma');
    expect((await c.call('GET', `/domains/${dom.id}/pagetable`)).body).toEqual({ family: 'gart', aperture: { base: '0x58000000', size: 0x2000000 }, entries: [{ iova: '0x59fff000', pte: '0x90200000' }] });
    expect((await c.call('POST', '/devices/display/access', { iova: '0x59fff004', access: 'read' })).body).toEqual({ outcome: 'ok', paddr: '0x10200004', tlb: 'miss' });
    const f = (await c.call('POST', '/devices/gr2d/access', { iova: '0x58000000', access: 'write' })).body;
    expect(f.fault).toEqual({ smmu: 'gart', context: 0, device: 'gr2d', domain: dom.id, iova: '0x58000000', access: 'write', priv: false, flags: 1, kind: 'translation', family: 'gart', intstatus: '0x80', errorReq: '0x51', errorAddr: '0x58000000', client: { id: 0x28, name: 'g2dw' } });
    expect((await c.call('POST', '/smmus/gart/mmio', { ops: [{ op: 'write', offset: '0x28', value: '0x59fff000' }, { op: 'read', offset: '0x2c' }] })).body.results[1]).toEqual({ offset: '0x2c', register: 'GART_ENTRY_DATA', value: '0x90200000' });
    expect((await c.call('POST', '/smmus/gart/masters/17/access', { iova: '0x58000000', access: 'read' })).body.error.code).toBe('BAD_REQUEST');
    const b = (await c.call('POST', `/domains/${dom.id}/batch`, { ops: [{ op: 'unmap', iova: '0x59fff000', size: 0x1000 }] }));
    expect(b.body.error.code).toBe('DOMAIN_TYPE');
  });

  it('a trace of the mixed session replays into the same state', async () => {
    const trace = (await c.app.inject({ method: 'GET', url: `/v1/sessions/${c.sid}/trace`, headers: { authorization: `Bearer ${c.token}` } })).body;
    const r = await c.app.inject({ method: 'POST', url: '/v1/sessions', payload: { trace } });
    expect(r.statusCode).toBe(201);
    const { id, token } = r.json();
    // TLB contents and counters are in no trace: a replayed session starts with them empty, as after a reset.
    const get = async (sid: string, tok: string, url: string) => ({ ...(await c.app.inject({ method: 'GET', url: `/v1/sessions/${sid}${url}`, headers: { authorization: `Bearer ${tok}` } })).json(), tlb: undefined });
    for (const url of ['/domains', '/smmus/gart/contexts/gr2d', '/smmus/mmu_dsp/contexts/dsp']) {
      expect(await get(id, token, url)).toEqual(await get(c.sid, c.token, url));
    }
  });
});
