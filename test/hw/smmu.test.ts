import { describe, expect, it } from 'vitest';
import { ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE } from '../../src/hw/context.js';
import { OUTCOME_FAULT, OUTCOME_OK, TLB_BYPASS, TLB_HIT, TLB_MISS } from '../../src/hw/smmu.js';
import { IOMMU_NOEXEC, IOMMU_PRIV, IOMMU_READ, IOMMU_WRITE } from '../../src/pgtable/desc.js';
import type { IommuEvent } from '../../src/events/bus.js';
import { codeOf, msmDevice, msmSession, tinySession, v7s } from '../support/core.js';
import { MsmSmmu } from '../../src/hw/msm/index.js';

const RW = IOMMU_READ | IOMMU_WRITE;
const RAM = 0x80000000;

function setup(opts: { stall?: boolean; tlbEntries?: number; flushPolicy?: 'strict' | 'deferred' } = {}) {
  const s = tinySession({ tlbEntries: opts.tlbEntries });
  const dev = msmDevice(s, 'dev0');
  if (opts.stall) dev.bank.faultMode = 'stall';
  const d = s.iommu.domainAlloc({ flushPolicy: opts.flushPolicy });
  s.iommu.attach(d.id, 'dev0');
  const events: IommuEvent[] = [];
  s.bus.subscribe((e) => events.push(e));
  const tx = (iova: number, access = ACCESS_READ, priv = false, mid = 0) => {
    const r = dev.smmu.translate(dev.bank, iova, access, priv, mid);
    return { ...r };
  };
  return { s, dev, bank: dev.bank, smmu: dev.smmu, d, events, tx };
}

describe('attach programs the context bank as the MSM driver does', () => {
  it('exact register values after attach and after detach', () => {
    const { s, bank, d } = setup();
    expect(bank.SCTLR).toBe(0x7);
    expect(bank.ACTLR).toBe((3 << 12) | (3 << 16) | 0x2); // TLBMCFG=3, V2PCFG=3, CFEIE, terminate
    expect(bank.TTBR0).toBe(0x83e00002);
    expect(bank.TTBCR).toBe(0);
    expect(bank.PRRR).toBe(0x800b8204);
    expect(bank.NMRR).toBe(0x40004000);
    expect(bank.CONTEXTIDR).toBe(0);
    s.iommu.detach(d.id, 'dev0');
    expect([bank.SCTLR, bank.ACTLR, bank.TTBR0, bank.PRRR, bank.NMRR, bank.FSR]).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('stall fault mode sets ACTLR.CFCFG; dev1 gets ASID 1', () => {
    const s = tinySession();
    msmDevice(s, 'dev1').bank.faultMode = 'stall';
    const d = s.iommu.domainAlloc();
    s.iommu.attach(d.id, 'dev1');
    expect(msmDevice(s, 'dev1').bank.ACTLR).toBe((3 << 12) | (3 << 16) | 0x2 | 0x4000);
    expect(msmDevice(s, 'dev1').bank.CONTEXTIDR).toBe(1);
  });

  it('DEVICE_BUSY, re-attach no-op, replace switches TTBR0 and drops TLB entries, NOT_ATTACHED, DOMAIN_ATTACHED', () => {
    const { s, d, bank, smmu, tx } = setup();
    const d2 = s.iommu.domainAlloc();
    expect(codeOf(() => s.iommu.attach(d2.id, 'dev0'))).toBe('DEVICE_BUSY');
    expect(s.iommu.attach(d.id, 'dev0')).toBe(d);
    s.iommu.map(d.id, 0x1000, RAM, 0x1000, RW);
    tx(0x1000);
    expect(smmu.tlb.size).toBe(1);
    s.iommu.attach(d2.id, 'dev0', true);
    expect(bank.TTBR0).toBe((v7s(d2).l1 | 0x2) >>> 0);
    expect(smmu.tlb.size).toBe(0);
    expect(codeOf(() => s.iommu.detach(d.id, 'dev0'))).toBe('NOT_ATTACHED');
    expect(codeOf(() => s.iommu.domainFree(d2.id))).toBe('DOMAIN_ATTACHED');
    s.iommu.domainFree(d.id);
    expect(codeOf(() => s.iommu.domain(d.id))).toBe('NOT_FOUND');
  });
});

describe('transactions', () => {
  it('bypass when SCTLR.M is clear; miss then hit', () => {
    const { s, d, tx, smmu } = setup();
    const dev1 = msmDevice(s, 'dev1');
    expect(dev1.smmu.translate(dev1.bank, 0x1234, ACCESS_READ, false, 1)).toMatchObject({ outcome: OUTCOME_OK, paddr: 0x1234, tlb: TLB_BYPASS });
    s.iommu.map(d.id, 0x10000, RAM + 0x20000, 0x10000, RW);
    expect(tx(0x10008)).toMatchObject({ outcome: OUTCOME_OK, paddr: RAM + 0x20008, tlb: TLB_MISS, pageSize: 0x10000 });
    expect(tx(0x1fffc)).toMatchObject({ outcome: OUTCOME_OK, paddr: RAM + 0x2fffc, tlb: TLB_HIT });
    expect(smmu.tlbStats()).toEqual({ hits: 1, misses: 1, evictions: 0, invalidations: 0 });
    expect(smmu.tlbStats(smmu.banks[0])).toEqual({ hits: 1, misses: 1, evictions: 0, invalidations: 0 });
  });

  it('translation fault: FSR TF, FAR, FSYNR0.AMID, FSYNR1.AWRITE, and a fault event', () => {
    const { bank, tx, events } = setup();
    const r = tx(0x00345000, ACCESS_WRITE, false, 0);
    expect(r.outcome).toBe(OUTCOME_FAULT);
    expect([bank.FSR, bank.FAR, bank.FSYNR0, bank.FSYNR1]).toEqual([0x2, 0x00345000, 0, 0x100]);
    expect(r.fault).toMatchObject({ kind: 'translation', fsr: '0x2', fsrBits: ['TF'], far: '0x345000', fsynr1: '0x100', flags: 1, access: 'write', device: 'dev0' });
    expect(events.filter((e) => e.type === 'fault')).toHaveLength(1);
  });

  it('second fault sets only MULTI and keeps the first FAR/FSYNR; write-1-to-clear as the kernel does', () => {
    const { bank, tx, smmu } = setup();
    tx(0x1000, ACCESS_READ, true, 0);
    tx(0x2000, ACCESS_WRITE, false, 0);
    expect(bank.FSR).toBe(0x80000002);
    expect(bank.FAR).toBe(0x1000);
    expect(bank.FSYNR1).toBe(0x20); // APRIV of the first fault, no AWRITE
    // The MSM handler writes 0x4000000F: clears TF and SS, not MULTI.
    writeFsr(smmu, bank, 0x4000000f);
    expect(bank.FSR).toBe(0x80000000);
    // MULTI alone does not count as pending: the next fault records normally.
    tx(0x3000, ACCESS_EXEC, false, 0);
    expect(bank.FSR).toBe(0x80000002);
    expect(bank.FAR).toBe(0x3000);
    expect(bank.FSYNR1).toBe(0x80);
  });

  it("each fault's record and event carry FSR and FAR as they are at that fault, across clears and banks", () => {
    const { s, bank, tx, smmu, events } = setup();
    const dev1 = msmDevice(s, 'dev1');
    s.iommu.attach(s.iommu.domainAlloc().id, 'dev1');
    const hexOf = (n: number) => '0x' + n.toString(16);
    // Addresses whose hex text shares hex()'s cache slot with FSR 0x80000002 (0x10000000) and others that do not.
    const iovas = [0x10000000, 0x10001000, 0x00345000, 0x10000000, 0x20000000, 0x00001000];
    const seen: Array<[string, string]> = [];
    const want: Array<[string, string]> = [];
    for (let round = 0; round < 3; round++) {
      // Each round starts at another address: FAR changes with the first fault after a clear.
      for (const iova of [...iovas.slice(round), ...iovas.slice(0, round)]) {
        for (const [b, r] of [[bank, () => tx(iova)], [dev1.bank, () => ({ ...dev1.smmu.translate(dev1.bank, iova ^ 0x5000, ACCESS_READ, false, 1) })]] as const) {
          const f = r().fault!;
          seen.push([f.fsr, f.far]);
          want.push([hexOf(b.FSR), hexOf(b.FAR)]);
        }
      }
      writeFsr(smmu, bank, 0xffffffff);
      if (round === 1) writeFsr(dev1.smmu, dev1.bank, 0xffffffff);
    }
    expect(seen).toEqual(want);
    const evs = events.filter((e) => e.type === 'fault').map((e) => [(e as { fsr: string }).fsr, (e as { far: string }).far]);
    expect(evs).toEqual(want);
    expect(new Set(want.map((w) => w.join())).size).toBeGreaterThan(6);
  });

  it('permission checks: write to read-only, exec through XN, user to PRIV; a walk fills the TLB even then', () => {
    const { s, d, tx, bank, smmu } = setup();
    s.iommu.map(d.id, 0x1000, RAM, 0x1000, IOMMU_READ);
    s.iommu.map(d.id, 0x2000, RAM, 0x1000, RW | IOMMU_NOEXEC);
    s.iommu.map(d.id, 0x3000, RAM, 0x1000, RW | IOMMU_PRIV);
    expect(tx(0x1000, ACCESS_WRITE).fault).toMatchObject({ kind: 'permission', fsr: '0x8' });
    expect(smmu.tlb.size).toBe(1);
    bank.FSR = 0;
    expect(tx(0x1000, ACCESS_READ).outcome).toBe(OUTCOME_OK);
    expect(tx(0x2000, ACCESS_EXEC).fault).toMatchObject({ kind: 'permission', access: 'exec', fsynr1: '0x80' });
    bank.FSR = 0;
    expect(tx(0x3000, ACCESS_READ, false).fault).toMatchObject({ kind: 'permission' });
    bank.FSR = 0;
    expect(tx(0x3000, ACCESS_WRITE, true).outcome).toBe(OUTCOME_OK);
  });

  it('access flag fault when AP[0] is clear in a hand-written descriptor', () => {
    const { s, d, tx } = setup();
    s.iommu.map(d.id, 0x00100000, RAM, 0x100000, RW);
    const l1a = v7s(d).l1 + 4;
    s.soc.mem.write32(l1a, (s.soc.mem.read32(l1a) & ~0x400) >>> 0);
    expect(tx(0x00100000).fault).toMatchObject({ kind: 'access-flag', fsr: '0x4' });
  });

  it('a walk that leaves RAM is an external fault (HTWSEEF)', () => {
    const { tx, bank } = setup();
    bank.TTBR0 = 0x10000000;
    expect(tx(0x1000).fault).toMatchObject({ kind: 'external', fsr: '0x40', fsrBits: ['HTWSEEF'] });
  });

  it('fault injection: external, multi-hit and TLB-miss on the next transaction only', () => {
    const { s, d, tx, bank } = setup();
    s.iommu.map(d.id, 0x1000, RAM, 0x1000, RW);
    for (const [kind, fsr] of [['external', 0x40], ['multi-hit', 0x80], ['tlb-miss', 0x10]] as const) {
      bank.injected = kind;
      expect(tx(0x1000).fault).toMatchObject({ kind, fsr: '0x' + fsr.toString(16) });
      bank.FSR = 0;
      expect(tx(0x1000).outcome).toBe(OUTCOME_OK);
    }
  });

  it('ACTLR.TLBMCFG other than 3 turns a TLB miss into TLBMF', () => {
    const { s, d, tx, bank } = setup();
    s.iommu.map(d.id, 0x1000, RAM, 0x1000, RW);
    bank.ACTLR &= ~(3 << 12);
    expect(tx(0x1000).fault).toMatchObject({ kind: 'tlb-miss', fsr: '0x10' });
  });

  it('CFEIE clear: the fault is recorded but not reported as an event', () => {
    const { tx, bank, events } = setup();
    bank.ACTLR &= ~0x2;
    tx(0x5000);
    expect(bank.FSR).toBe(0x2);
    expect(events.some((e) => e.type === 'fault')).toBe(false);
  });
});

describe('stall mode', () => {
  it('stall, map, resume retry completes; SS clears with the last stall', () => {
    const { s, d, smmu, bank, events } = setup({ stall: true });
    const r = smmu.transfer(bank, { iova: 0x7000, access: ACCESS_READ, priv: false, mid: 0, size: 4 });
    expect(r).toMatchObject({ outcome: 'stalled', fault: { kind: 'translation', fsr: '0x40000002' } });
    const stall = (r as { stall: string }).stall;
    expect(bank.FSR).toBe(0x40000002);
    expect(events.map((e) => e.type)).toEqual(['fault', 'stall']);
    s.iommu.map(d.id, 0x7000, RAM + 0x9000, 0x1000, RW);
    bank.FSR = 0x40000002 & ~0x2; // the handler clears TF, leaving SS
    const done = smmu.resume(bank, stall, 'retry');
    expect(done).toMatchObject({ outcome: 'ok', paddr: RAM + 0x9000, tlb: 'miss' });
    expect(bank.FSR).toBe(0);
    expect(bank.stalls).toEqual([]);
    expect(events.at(-1)).toMatchObject({ type: 'resume', stall, action: 'retry', outcome: 'ok' });
  });

  it('stall then terminate; unknown stall NOT_FOUND; detach terminates what is left', () => {
    const { s, d, smmu, bank } = setup({ stall: true });
    const a = smmu.transfer(bank, { iova: 0x7000, access: ACCESS_READ, priv: false, mid: 0, size: 4 }) as { stall: string };
    expect(smmu.resume(bank, a.stall, 'terminate')).toEqual({ outcome: 'terminated' });
    expect(bank.FSR & 0x40000000).toBe(0);
    expect(codeOf(() => smmu.resume(bank, a.stall, 'retry'))).toBe('NOT_FOUND');
    smmu.transfer(bank, { iova: 0x8000, access: ACCESS_READ, priv: false, mid: 0, size: 4 });
    s.iommu.detach(d.id, 'dev0');
    expect(bank.stalls).toEqual([]);
  });

  it('a fault handler that maps the page and answers retry completes the transaction', () => {
    const { s, d, smmu, bank } = setup({ stall: true });
    const seen: unknown[] = [];
    s.iommu.setFaultHandler(d.id, (info) => {
      seen.push(info);
      s.iommu.map(d.id, info.iova & ~0xfff, RAM, 0x1000, RW);
      return 'retry';
    });
    const r = smmu.transfer(bank, { iova: 0x4010, access: ACCESS_WRITE, priv: false, mid: 0, size: 4, data: new Uint8Array([1, 2, 3, 4]) });
    expect(seen).toEqual([{ domain: d.id, device: 'dev0', iova: 0x4010, flags: 1 }]);
    expect(r).toMatchObject({ outcome: 'ok', paddr: RAM + 0x10 });
    expect([...s.soc.mem.readBytes(RAM + 0x10, 4)]).toEqual([1, 2, 3, 4]);
  });
});

describe('TLB', () => {
  it('LRU evicts the least recently used entry', () => {
    const { s, d, tx, smmu } = setup({ tlbEntries: 2 });
    s.iommu.map(d.id, 0x1000, RAM, 0x3000, RW);
    tx(0x1000);
    tx(0x2000);
    tx(0x1000);
    tx(0x3000); // evicts 0x2000
    expect(smmu.tlb.entries().map((e) => e.vaBase).sort((a, b) => a - b)).toEqual([0x1000, 0x3000]);
    expect(smmu.tlbStats().evictions).toBe(1);
  });

  it('round-robin and flush-all policies', () => {
    for (const [policy, want] of [['round-robin', [0x2000, 0x3000]], ['flush-all', [0x3000]]] as const) {
      const s = tinySession({ tlbEntries: 2, tlbPolicy: policy });
      const dev = msmDevice(s, 'dev0');
      const d = s.iommu.domainAlloc();
      s.iommu.attach(d.id, 'dev0');
      s.iommu.map(d.id, 0x1000, RAM, 0x3000, RW);
      for (const va of [0x1000, 0x2000, 0x1000, 0x3000]) dev.smmu.translate(dev.bank, va, ACCESS_READ, false, 0);
      expect(dev.smmu.tlb.entries().map((e) => e.vaBase).sort((a, b) => a - b)).toEqual(want);
    }
  });

  it('deferred unmap: a stale entry keeps translating and is reported until sync', () => {
    const { s, d, tx, events } = setup({ flushPolicy: 'deferred' });
    s.iommu.map(d.id, 0x1000, RAM + 0x5000, 0x1000, RW);
    tx(0x1000);
    s.iommu.unmap(d.id, 0x1000, 0x1000);
    expect(d.pending).toEqual([{ iova: 0x1000, size: 0x1000 }]);
    const r = tx(0x1000);
    expect(r).toMatchObject({ outcome: OUTCOME_OK, paddr: RAM + 0x5000, tlb: TLB_HIT, stale: true });
    expect(events.at(-1)).toMatchObject({ type: 'stale-tlb-hit', domain: d.id, iova: '0x1000', stale: { paddr: '0x80005000', prot: ['read', 'write'] }, current: null });
    expect(s.iommu.sync(d.id).invalidated).toBe(1);
    expect(tx(0x1000).outcome).toBe(OUTCOME_FAULT);
  });

  it('strict unmap invalidates at once; a split that keeps a translation is not stale', () => {
    const { s, d, tx, events } = setup();
    s.iommu.map(d.id, 0x00100000, RAM, 0x100000, RW);
    tx(0x00100000);
    s.iommu.unmap(d.id, 0x00105000, 0x1000);
    expect(tx(0x00100000)).toMatchObject({ tlb: TLB_MISS, stale: false });
    expect(tx(0x00105000).outcome).toBe(OUTCOME_FAULT);
    expect(events.some((e) => e.type === 'stale-tlb-hit')).toBe(false);
  });

  it('multi-hit when two entries of different sizes match (unflushed remap)', () => {
    const { s, d, tx } = setup({ flushPolicy: 'deferred' });
    s.iommu.map(d.id, 0x00100000, RAM, 0x1000, RW);
    tx(0x00100000);
    s.iommu.unmap(d.id, 0x00100000, 0x1000);
    s.iommu.map(d.id, 0x00100000, RAM, 0x100000, RW);
    tx(0x00180000); // fills the 1M entry
    expect(tx(0x00100000).fault).toMatchObject({ kind: 'multi-hit', fsr: '0x80' });
  });

  it('V2P probe fills PAR and never FSR: 4K, supersection, fault', () => {
    const { s, d, smmu, bank } = setup();
    s.iommu.map(d.id, 0x01000000, RAM, 0x1000000, RW);
    s.iommu.map(d.id, 0x3000, RAM + 0x7000, 0x1000, IOMMU_READ);
    expect(smmu.probe(bank, 0x3000, true, false)).toBe(RAM + 0x7000);
    expect(smmu.probe(bank, 0x01234000, true, false)).toBe(RAM + 0x2);
    expect(smmu.probe(bank, 0x3000, true, true)).toBe(0x9);
    expect(smmu.probe(bank, 0x9000, false, false)).toBe(0x3);
    expect(bank.FSR).toBe(0);
    expect(smmu.tlb.size).toBe(0);
  });
});

import { writeRegister } from '../../src/hw/mmio.js';
import type { ContextBank } from '../../src/hw/context.js';
import type { Smmu } from '../../src/hw/smmu.js';
import { NULL_SINK } from '../../src/events/types.js';
function writeFsr(smmu: Smmu, bank: ContextBank, v: number) {
  writeRegister(smmu, (bank.index << 12) | 0x20, v, NULL_SINK);
}

describe('MMIO writes that change translation are events', () => {
  it('TTBR0, SCTLR, TLBIALL and M2VCBR_N writes carry register, old and new value', () => {
    const s = tinySession();
    const events: IommuEvent[] = [];
    s.bus.subscribe((e) => events.push(e));
    const smmu = (s.soc.smmus[0] as MsmSmmu);
    writeRegister(smmu, 0x010, 0x83e00002, s.bus);
    writeRegister(smmu, 0x000, 0x7, s.bus);
    writeRegister(smmu, 0x800, 0, s.bus);
    writeRegister(smmu, 0xff000 + 4, 0, s.bus);
    writeRegister(smmu, 0x020, 0, s.bus); // FSR: no translation change, no event
    expect(events.map((e) => (e.type === 'mmio' ? [e.register, e.old, e.new] : [e.type]))).toEqual([
      ['TTBR0', '0x0', '0x83e00002'],
      ['SCTLR', '0x0', '0x7'],
      ['CTX_TLBIALL', '0x0', '0x0'],
      ['M2VCBR_N', '0x100', '0x0'],
    ]);
    expect(events[3]).toMatchObject({ type: 'mmio', smmu: 'smmu0', index: 1, offset: '0xff004' });
  });
});

describe('write-only registers (regression: they were looked up by name in a table keyed by offset)', () => {
  it('TLBIVA, TLBIASID, TLBIVAA and GLOBAL_TLBIALL events report the value written; the registers read as 0', async () => {
    const { readRegister } = await import('../../src/hw/mmio.js');
    const s = tinySession();
    const events: IommuEvent[] = [];
    s.bus.subscribe((e) => events.push(e));
    const smmu = s.soc.smmus[0] as MsmSmmu;
    writeRegister(smmu, 0x808, 0x10005001, s.bus);
    writeRegister(smmu, 0x804, 0x5, s.bus);
    writeRegister(smmu, 0x80c, 0x20000000, s.bus);
    writeRegister(smmu, 0xfff00, 0x1, s.bus);
    expect(events.map((e) => (e.type === 'mmio' ? [e.register, e.old, e.new] : [e.type]))).toEqual([
      ['TLBIVA', '0x0', '0x10005001'],
      ['TLBIASID', '0x0', '0x5'],
      ['TLBIVAA', '0x0', '0x20000000'],
      ['GLOBAL_TLBIALL', '0x0', '0x1'],
    ]);
    for (const off of [0x800, 0x804, 0x808, 0x80c, 0x810, 0x814, 0x818, 0x81c, 0xfff00]) expect(readRegister(smmu, off), off.toString(16)).toBe(0);
  });
});

describe('M2VCBR routing of idle SMMUs is shared until written (session construction cost)', () => {
  it('an MMIO write, an attach and a restore route only their own SMMU; other sessions keep the driver routing', () => {
    const a = msmSession();
    const b = msmSession();
    const vfeA = msmDevice(a, 'vfe_imgwr').smmu;
    const vfeB = msmDevice(b, 'vfe_imgwr').smmu;
    // The driver's routing: MIDs 2..8 to bank 0 (vfe_imgwr), 0, 1 and 9 to bank 1 (vfe_misc), the rest to bank 0.
    expect([0, 1, 2, 8, 9, 10].map((m) => vfeA.readRegister(0xff000 + 4 * m))).toEqual([0x100, 0x100, 0, 0, 0x100, 0]);
    vfeA.writeRegister(0xff000 + 4 * 2, 0x100);
    expect(vfeA.readRegister(0xff000 + 4 * 2)).toBe(0x100);
    expect(vfeB.readRegister(0xff000 + 4 * 2)).toBe(0);
    expect(vfeA.bankOfMid(2)!.index).toBe(1);
    expect(vfeB.bankOfMid(2)!.index).toBe(0);
    // Attach rewrites the bank's own MIDs (vfe_imgwr: 2..8) only in the session that attaches.
    const d = a.iommu.domainAlloc();
    a.iommu.attach(d.id, 'vfe_imgwr');
    expect(vfeA.readRegister(0xff000 + 4 * 2)).toBe(0);
    vfeA.writeRegister(0xff000 + 4 * 200, 0x100);
    // A snapshot restored into a third session routes MID 200 there, not in the sessions of the same profile.
    const c = msmSession();
    c.restoreSnapshot(JSON.parse(JSON.stringify(a.snapshot())));
    expect(msmDevice(c, 'vfe_imgwr').smmu.readRegister(0xff000 + 4 * 200)).toBe(0x100);
    expect(vfeB.readRegister(0xff000 + 4 * 200)).toBe(0);
    expect(msmDevice(msmSession(), 'vfe_imgwr').smmu.readRegister(0xff000 + 4 * 200)).toBe(0);
  });
});
