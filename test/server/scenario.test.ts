import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, type Client } from '../support/server.js';

describe('a driver-like scenario over HTTP (msm8x60)', () => {
  let c: Client;
  let did: string;
  beforeAll(async () => {
    c = await client();
  });
  afterAll(() => c.app.close());

  it('allocates the first domain with TTBR0 at the pool base and attaches vfe_imgwr', async () => {
    const r = await c.call('POST', '/domains', { label: 'camera' });
    expect(r.status).toBe(201);
    expect(r.body).toEqual({
      id: r.body.id, type: 'unmanaged', family: 'msm', label: 'camera', ttbr0: '0x5f000000', attached: [], mappedBytes: 0,
      pages: { '4K': 0, '64K': 0, '1M': 0, '16M': 0 }, pendingSync: [], pgsizes: [4096, 65536, 1048576, 16777216], flushPolicy: 'strict', partialUnmap: 'split',
    });
    did = r.body.id;
    const a = await c.call('POST', `/domains/${did}/attach`, { device: 'vfe_imgwr' });
    expect(a.status).toBe(200);
    expect(a.body.attached).toEqual(['vfe_imgwr']);
    const ctx = await c.call('GET', '/smmus/vfe/contexts/vfe_imgwr');
    expect(ctx.body.registers).toMatchObject({ SCTLR: '0x7', ACTLR: '0x33002', TTBR0: '0x5f000002', TTBCR: '0x0', CONTEXTIDR: '0x0', PRRR: '0x800b8204', NMRR: '0x40004000', FSR: '0x0' });
    expect(ctx.body).toMatchObject({ index: 0, device: 'vfe_imgwr', mids: [2, 3, 4, 5, 6, 7, 8], enabled: true, domain: did, faultMode: 'terminate' });
  });

  it('maps 4K, 64K, 1M and 16M regions and the page table holds the exact descriptors', async () => {
    expect((await c.call('POST', `/domains/${did}/map`, { iova: '0x10000000', paddr: '0x40000000', size: 4096, prot: ['read', 'write'] })).body).toEqual({ iova: '0x10000000', size: 4096, pages: { '4K': 1, '64K': 0, '1M': 0, '16M': 0 } });
    expect((await c.call('POST', `/domains/${did}/map`, { iova: 0x10010000, paddr: 0x40010000, size: '0x10000', prot: ['read', 'write'] })).body.pages).toEqual({ '4K': 0, '64K': 1, '1M': 0, '16M': 0 });
    expect((await c.call('POST', `/domains/${did}/map`, { iova: '0x10100000', paddr: '0x40100000', size: '0x100000', prot: ['read', 'noexec'] })).body.pages).toEqual({ '4K': 0, '64K': 0, '1M': 1, '16M': 0 });
    expect((await c.call('POST', `/domains/${did}/map`, { iova: '0x11000000', paddr: '0x41000000', size: '0x1000000', prot: ['read', 'write'] })).body.pages).toEqual({ '4K': 0, '64K': 0, '1M': 0, '16M': 1 });
    const pt = (await c.call('GET', `/domains/${did}/pagetable`)).body;
    expect(pt.ttbr0).toBe('0x5f000000');
    expect(pt.l1).toEqual([
      { index: 0x100, desc: '0x5f004001' },
      { index: 0x101, desc: '0x40139c12' },
      ...Array.from({ length: 16 }, (_, k) => ({ index: 0x110 + k, desc: '0x41071c02' })),
    ]);
    expect(pt.l2).toEqual([
      { base: '0x5f004000', entries: [{ index: 0, desc: '0x40000c72' }, ...Array.from({ length: 16 }, (_, k) => ({ index: 16 + k, desc: '0x40011c31' }))] },
    ]);
    const d = (await c.call('GET', `/domains/${did}`)).body;
    expect(d.mappedBytes).toBe(0x1000 + 0x10000 + 0x100000 + 0x1000000);
    expect((await c.call('GET', `/domains/${did}/iova-to-phys/0x11abcdef`)).body).toEqual({ iova: '0x11abcdef', paddr: '0x41abcdef', pageSize: 16777216, prot: ['read', 'write'] });
    expect((await c.call('GET', `/domains/${did}/mappings`)).body).toEqual([
      { iova: '0x10000000', paddr: '0x40000000', size: 0x1000, pageSize: 0x1000, prot: ['read', 'write'] },
      { iova: '0x10010000', paddr: '0x40010000', size: 0x10000, pageSize: 0x10000, prot: ['read', 'write'] },
      { iova: '0x10100000', paddr: '0x40100000', size: 0x100000, pageSize: 0x100000, prot: ['read', 'noexec'] },
      { iova: '0x11000000', paddr: '0x41000000', size: 0x1000000, pageSize: 0x1000000, prot: ['read', 'write'] },
    ]);
  });

  it('accesses: miss then hit; permission and translation faults fill FSR/FAR/FSYNR as the hardware would', async () => {
    expect((await c.call('POST', '/devices/vfe_imgwr/access', { iova: '0x10000010', access: 'read' })).body).toEqual({ outcome: 'ok', paddr: '0x40000010', tlb: 'miss' });
    expect((await c.call('POST', '/devices/vfe_imgwr/access', { iova: '0x10000020', access: 'read' })).body).toEqual({ outcome: 'ok', paddr: '0x40000020', tlb: 'hit' });
    const f = (await c.call('POST', '/devices/vfe_imgwr/access', { iova: '0x10100000', access: 'write' })).body;
    expect(f).toEqual({
      outcome: 'fault',
      fault: { smmu: 'vfe', context: 0, device: 'vfe_imgwr', domain: did, iova: '0x10100000', access: 'write', priv: false, flags: 1, kind: 'permission', family: 'msm', fsr: '0x8', fsrBits: ['APF'], far: '0x10100000', fsynr0: '0x2', fsynr1: '0x100' },
    });
    const t = (await c.call('POST', '/devices/vfe_imgwr/access', { iova: '0x20000000', access: 'read', mid: 5, priv: true })).body;
    expect(t.fault).toMatchObject({ kind: 'translation', fsr: '0x80000008', fsrBits: ['APF', 'MULTI'], far: '0x10100000', fsynr0: '0x2', fsynr1: '0x100' });
    const regs = (await c.call('GET', '/smmus/vfe/contexts/0')).body.registers;
    expect([regs.FSR, regs.FAR, regs.FSYNR0, regs.FSYNR1]).toEqual(['0x80000008', '0x10100000', '0x2', '0x100']);
  });

  it('clear-fault: the MSM handler value leaves MULTI; the default clears every bit', async () => {
    expect((await c.call('POST', '/smmus/vfe/contexts/vfe_imgwr/clear-fault', { value: '0x4000000F' })).body.registers.FSR).toBe('0x80000000');
    expect((await c.call('POST', '/smmus/vfe/contexts/vfe_imgwr/clear-fault')).body.registers.FSR).toBe('0x0');
  });

  it('stall, then map, then resume retry completes the transaction', async () => {
    const p = await c.call('PATCH', '/smmus/vfe/contexts/vfe_imgwr', { faultMode: 'stall' });
    expect(p.body).toMatchObject({ faultMode: 'stall', registers: { ACTLR: '0x37002' } });
    const s = (await c.call('POST', '/devices/vfe_imgwr/access', { iova: '0x30000008', access: 'write', data: Buffer.from('frame').toString('base64') })).body;
    expect(s).toMatchObject({ outcome: 'stalled', fault: { kind: 'translation', fsr: '0x40000002', fsrBits: ['TF', 'SS'] } });
    expect((await c.call('GET', '/smmus/vfe/contexts/vfe_imgwr')).body.stalls).toEqual([{ stall: s.stall, iova: '0x30000008', access: 'write' }]);
    await c.call('POST', `/domains/${did}/map`, { iova: '0x30000000', paddr: '0x40200000', size: 4096, prot: ['read', 'write'] });
    await c.call('POST', '/smmus/vfe/contexts/vfe_imgwr/clear-fault', { value: '0xF' });
    const r = await c.call('POST', '/smmus/vfe/contexts/vfe_imgwr/resume', { stall: s.stall, action: 'retry' });
    expect(r.body).toEqual({ outcome: 'ok', paddr: '0x40200008', tlb: 'miss' });
    const back = await c.call('POST', '/devices/vfe_imgwr/access', { iova: '0x30000008', access: 'read', size: 5 });
    expect(Buffer.from(back.body.data, 'base64').toString()).toBe('frame');
    expect((await c.call('POST', '/smmus/vfe/contexts/vfe_imgwr/resume', { stall: s.stall, action: 'retry' })).body.error.code).toBe('NOT_FOUND');
  });

  it('revision counted one per successful mutation', async () => {
    const before = (await c.call('GET', '/')).body.revision;
    await c.call('POST', `/domains/${did}/flush`);
    await c.call('POST', `/domains/${did}/map`, { iova: '0x10000000', paddr: '0x40000000', size: 4096, prot: ['read'] }); // refused
    await c.call('POST', '/tokens', { role: 'observer' });
    expect((await c.call('GET', '/')).body.revision).toBe(before + 1);
  });
});
