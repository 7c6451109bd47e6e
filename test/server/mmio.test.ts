import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, type Client } from '../support/server.js';

const hexv = (n: number) => '0x' + (n >>> 0).toString(16);

describe('MMIO register window (vfe SMMU of msm8x60)', () => {
  let c: Client;
  const put = (off: number, value: number, smmu = 'vfe') => c.call('PUT', `/smmus/${smmu}/mmio/${hexv(off)}`, { value: hexv(value) });
  const get = async (off: number, smmu = 'vfe') => (await c.call('GET', `/smmus/${smmu}/mmio/${hexv(off)}`)).body.value as string;
  const mem = (paddr: number, words: number[]) => {
    const b = Buffer.alloc(words.length * 4);
    words.forEach((w, i) => b.writeUInt32LE(w >>> 0, i * 4));
    return c.app.inject({ method: 'PUT', url: `/v1/sessions/${c.sid}/memory?paddr=${hexv(paddr)}`, headers: { authorization: `Bearer ${c.token}`, 'content-type': 'application/octet-stream' }, payload: b });
  };
  beforeAll(async () => {
    c = await client();
  });
  afterAll(() => c.app.close());

  it('IDR, REV and routing read back as the profile describes; reserved offsets and unaligned accesses are refused', async () => {
    expect(await get(0xffff8)).toBe(hexv((1 << 16) | (7 << 12) | (1 << 9) | 255)); // NCB = 2 - 1, TLBSIZE = log2(128), HTW
    expect(await get(0xffff4)).toBe('0x10'); // MAJOR 1 (7:4), MINOR 0 (3:0)
    expect(await get(0xff000 + 4 * 9)).toBe('0x100'); // MID 9 → vfe_misc (bank 1)
    expect(await get(0xff000 + 4 * 3)).toBe('0x0');
    await put(0xffff8, 0);
    expect(await get(0xffff8)).toBe(hexv((1 << 16) | (7 << 12) | (1 << 9) | 255)); // read-only: the write is ignored
    expect((await c.call('GET', '/smmus/vfe/mmio/0x50')).body.error.code).toBe('BAD_REQUEST');
    expect((await c.call('GET', '/smmus/vfe/mmio/0x11')).body.error.code).toBe('BAD_REQUEST');
    expect((await c.call('GET', '/smmus/vfe/mmio/0x2000')).body.error.code).toBe('BAD_REQUEST');
  });

  it("replays the driver's context programming through MMIO alone; transactions translate through a hand-built table", async () => {
    // A table built through the memory API: L1 at 0x40400000; 1M section for iova 0x00100000; an L2 table with a
    // small page for iova 0x00205000.
    expect((await mem(0x40400000 + 4 * 1, [0x40831c02])).statusCode).toBe(204);
    await mem(0x40400000 + 4 * 2, [0x40404001]);
    await mem(0x40404000 + 4 * 5, [0x40905c72]);
    const seq = [
      [0x1000 + 0x000, 0], // reset SCTLR
      [0x1000 + 0x004, 0x33002], // ACTLR: TLBMCFG=3, V2PCFG=3, CFEIE
      [0x1000 + 0x018, 0], // TTBCR
      [0x1000 + 0x010, 0x40400002], // TTBR0
      [0x1000 + 0x014, 0],
      [0x1000 + 0x034, 0x800b8204], // PRRR
      [0x1000 + 0x038, 0x40004000], // NMRR
      [0x1000 + 0x008, 1], // CONTEXTIDR.ASID = bank
      [0x1000 + 0x800, 0], // CTX_TLBIALL
      [0x1000 + 0x000, 0x7], // SCTLR: M, TRE, AFE
    ];
    const r = await c.call('POST', '/smmus/vfe/mmio', { ops: seq.map(([offset, value]) => ({ op: 'write', offset: hexv(offset!), value: hexv(value!) })) });
    expect(r.body.results.map((x: { register: string }) => x.register)).toEqual(['SCTLR', 'ACTLR', 'TTBCR', 'TTBR0', 'TTBR1', 'PRRR', 'NMRR', 'CONTEXTIDR', 'CTX_TLBIALL', 'SCTLR']);
    expect((await c.call('POST', '/devices/vfe_misc/access', { iova: '0x00100010', access: 'read' })).body).toEqual({ outcome: 'ok', paddr: '0x40800010', tlb: 'miss' });
    expect((await c.call('POST', '/devices/vfe_misc/access', { iova: '0x00205abc', access: 'write' })).body).toEqual({ outcome: 'ok', paddr: '0x40905abc', tlb: 'miss' });
    expect((await c.call('POST', '/devices/vfe_misc/access', { iova: '0x00300000', access: 'read' })).body.fault).toMatchObject({ kind: 'translation', fsynr0: '0x0' });
    // The same registers as the IOMMU-API attach path programs (but for TTBR0 and the bank's ASID).
    const d = (await c.call('POST', '/domains', {})).body.id;
    await c.call('POST', `/domains/${d}/attach`, { device: 'jpegd_dst' });
    const viaApi = (await c.call('GET', '/smmus/jpegd/contexts/jpegd_dst')).body.registers;
    const viaMmio = (await c.call('GET', '/smmus/vfe/contexts/vfe_misc')).body.registers;
    for (const reg of ['SCTLR', 'ACTLR', 'TTBCR', 'TTBR1', 'PRRR', 'NMRR', 'CONTEXTIDR']) expect(viaMmio[reg], reg).toBe(viaApi[reg]);
    expect(viaMmio.TTBR0).toBe('0x40400002');
  });

  it("the driver's iova_to_phys through V2PPR/PAR for 4K, 64K, 1M and 16M; a faulting probe goes to PAR only", async () => {
    const d = (await c.call('POST', '/domains', {})).body.id;
    await c.call('POST', `/domains/${d}/attach`, { device: 'vfe_imgwr' });
    const maps = [['0x10000000', '0x41000000', 0x1000], ['0x10010000', '0x41010000', 0x10000], ['0x10100000', '0x41100000', 0x100000], ['0x11000000', '0x42000000', 0x1000000]] as const;
    for (const [iova, paddr, size] of maps) await c.call('POST', `/domains/${d}/map`, { iova, paddr, size, prot: ['read', 'write'] });
    const probe = async (va: number) => {
      await put(0x810, va & ~0xfff);
      return Number(await get(0x01c));
    };
    const iovaToPhys = (va: number, par: number) => (par & 2 ? (par & 0xff000000) | (va & 0xffffff) : (par & 0xfffff000) | (va & 0xfff)) >>> 0;
    expect(hexv(await probe(0x10000abc))).toBe('0x41000000');
    expect(hexv(await probe(0x1001f123))).toBe('0x4101f000');
    expect(hexv(await probe(0x101ff000))).toBe('0x411ff000');
    const par = await probe(0x11abc123);
    expect(hexv(par)).toBe('0x42000002');
    expect(hexv(iovaToPhys(0x11abc123, par))).toBe('0x42abc123');
    expect(hexv(await probe(0x20000000))).toBe('0x3'); // FAULT | TF
    expect(await get(0x020)).toBe('0x0'); // FSR untouched
    // Reads of write-only registers are zero.
    expect(await get(0x810)).toBe('0x0');
  });

  it('a stale entry is served after a PTE or TTBR0 change without TLBIVA, and gone after TLBIVA of exactly that page', async () => {
    const d = (await c.call('POST', '/domains', { flushPolicy: 'deferred' })).body.id;
    await c.call('POST', `/domains/${d}/attach`, { device: 'vpe_src' });
    await c.call('POST', `/domains/${d}/map`, { iova: '0x5000', paddr: '0x43000000', size: 4096, prot: ['read', 'write'] });
    await c.call('POST', `/domains/${d}/map`, { iova: '0x6000', paddr: '0x43001000', size: 4096, prot: ['read', 'write'] });
    const acc = (iova: string) => c.call('POST', '/devices/vpe_src/access', { iova, access: 'read' });
    await acc('0x5000');
    await acc('0x6000');
    // Rewrite the PTE for 0x5000 behind the TLB's back: paddr 0x43000000 → 0x44000000.
    const pt = (await c.call('GET', `/domains/${d}/pagetable`)).body;
    const l2 = Number(pt.l2[0].base);
    await mem(l2 + 5 * 4, [0x44000c72]);
    expect((await acc('0x5000')).body).toEqual({ outcome: 'ok', paddr: '0x43000000', tlb: 'hit', stale: true });
    await put(0x808, 0x6000 | 0, 'vpe'); // TLBIVA of another page: the stale entry stays
    expect((await acc('0x5000')).body.stale).toBe(true);
    await put(0x808, 0x5000 | 0, 'vpe'); // TLBIVA of exactly that page, ASID 0
    expect((await acc('0x5000')).body).toEqual({ outcome: 'ok', paddr: '0x44000000', tlb: 'miss' });
    // TTBR0 moved to an empty table without invalidation: the old entries answer, stale.
    await acc('0x6000');
    const empty = (await c.call('POST', '/domains', {})).body.ttbr0;
    await c.call('PUT', `/smmus/vpe/mmio/0x10`, { value: hexv(Number(empty) | 0x2) });
    expect((await acc('0x6000')).body).toEqual({ outcome: 'ok', paddr: '0x43001000', tlb: 'hit', stale: true });
    await put(0x800, 0, 'vpe'); // CTX_TLBIALL
    expect((await acc('0x6000')).body.outcome).toBe('fault');
  });

  it('stall, then RESUME through MMIO: retry and terminate; FSR cleared by a write-1-to-clear', async () => {
    const d = (await c.call('POST', '/domains', {})).body.id;
    await c.call('PATCH', '/smmus/rot/contexts/rot_src', { faultMode: 'stall' });
    await c.call('POST', `/domains/${d}/attach`, { device: 'rot_src' });
    const s1 = (await c.call('POST', '/devices/rot_src/access', { iova: '0x9000', access: 'read' })).body;
    expect(s1.outcome).toBe('stalled');
    expect(await get(0x020, 'rot')).toBe('0x40000002');
    await c.call('POST', `/domains/${d}/map`, { iova: '0x9000', paddr: '0x45000000', size: 4096, prot: ['read'] });
    await put(0x020, 0xf, 'rot'); // TF only: writing SS would terminate the stall
    await put(0x820, 0, 'rot'); // RESUME.TNR = 0: retry
    expect((await c.call('GET', '/smmus/rot/contexts/rot_src')).body.stalls).toEqual([]);
    const s2 = (await c.call('POST', '/devices/rot_src/access', { iova: '0xa000', access: 'read' })).body;
    expect(s2.outcome).toBe('stalled');
    await put(0x820, 1, 'rot'); // terminate
    expect((await c.call('GET', '/smmus/rot/contexts/rot_src')).body.stalls).toEqual([]);
    expect(await get(0x020, 'rot')).toBe('0x2'); // SS cleared with the last stall; TF stays until written
    await put(0x020, 0x2, 'rot');
    expect(await get(0x020, 'rot')).toBe('0x0');
  });

  it('M2VCBR_N re-routes a master ID to the other bank; master-addressed access follows it', async () => {
    const d = (await c.call('POST', '/domains', {})).body.id;
    await c.call('POST', `/domains/${d}/attach`, { device: 'ijpeg_src' });
    await c.call('POST', `/domains/${d}/map`, { iova: '0x1000', paddr: '0x46000000', size: 4096, prot: ['read'] });
    // MID 1 routes to ijpeg_dst (bank 1, not enabled: bypass).
    expect((await c.call('POST', '/smmus/ijpeg/masters/1/access', { iova: '0x1000', access: 'read' })).body).toEqual({ outcome: 'ok', paddr: '0x1000', tlb: 'bypass', unbacked: true });
    await put(0xff000 + 4 * 1, 0 << 8, 'ijpeg');
    expect((await c.call('POST', '/smmus/ijpeg/masters/1/access', { iova: '0x1000', access: 'read' })).body).toEqual({ outcome: 'ok', paddr: '0x46000000', tlb: 'miss' });
    const f = (await c.call('POST', '/smmus/ijpeg/masters/1/access', { iova: '0x2000', access: 'read' })).body;
    expect(f.fault).toMatchObject({ context: 0, device: 'ijpeg_src', fsynr0: '0x1' });
  });
});
