/**
 * The upstream msm_iommu driver's register sequences, replayed over iommud's MMIO window and checked against the
 * values the driver reads back. Register offsets, field masks/shifts and the written values are the facts of
 * drivers/iommu/msm_iommu_hw-8xxx.h and msm_iommu.c (msm_iommu_reset and the probe's PAR check, config_mids,
 * __program_context, __flush_iotlb, __flush_iotlb_range, iova_to_phys, print_ctx_regs with the FSR clear of the
 * fault handler, __reset_context), restated here independently of src/hw/regs.ts so that a decoding error in
 * iommud cannot hide behind a shared constant. The same scenarios run at library level (session commands, the
 * path the HTTP and stream front ends share) and over HTTP.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { MSM8X60 } from '../../src/hw/profile.js';
import { Session } from '../../src/session/session.js';
import { contextView } from '../../src/session/views.js';
import { MsmSmmu } from '../../src/hw/msm/index.js';
import { msmDevice, msmSession } from '../support/core.js';
import { client, type Client } from '../support/server.js';

// ---- msm_iommu_hw-8xxx.h: register offsets ----------------------------------------------------------------------
const CTX_SHIFT = 12;
const CTX = {
  SCTLR: 0x000, ACTLR: 0x004, CONTEXTIDR: 0x008, TTBR0: 0x010, TTBR1: 0x014, TTBCR: 0x018, PAR: 0x01c, FSR: 0x020,
  FSRRESTORE: 0x024, FAR: 0x028, FSYNR0: 0x02c, FSYNR1: 0x030, PRRR: 0x034, NMRR: 0x038, TLBLCKR: 0x03c, V2PSR: 0x040,
  TLBFLPTER: 0x044, TLBSLPTER: 0x048, BFBCR: 0x04c, CTX_TLBIALL: 0x800, TLBIASID: 0x804, TLBIVA: 0x808, TLBIVAA: 0x80c,
  V2PPR: 0x810, V2PPW: 0x814, V2PUR: 0x818, V2PUW: 0x81c, RESUME: 0x820,
} as const;
const GLOBAL = {
  M2VCBR_N: 0xff000, CBACR_N: 0xff800, TLBRSW: 0xffe00, TLBTR0: 0xffe80, TLBTR1: 0xffe84, TLBTR2: 0xffe88,
  TESTBUSCR: 0xffe8c, GLOBAL_TLBIALL: 0xfff00, TLBIVMID: 0xfff04, CR: 0xfff80, EAR: 0xfff84, ESR: 0xfff88,
  ESRRESTORE: 0xfff8c, ESYNR0: 0xfff90, ESYNR1: 0xfff94, REV: 0xffff4, IDR: 0xffff8, RPU_ACR: 0xffffc,
} as const;

// ---- msm_iommu_hw-8xxx.h: the fields the driver touches, [register, mask, shift] -------------------------------
type Field = readonly [number, number, number];
const F = {
  // ACTLR
  CFEIE: [CTX.ACTLR, 0x01, 1], RCOSH: [CTX.ACTLR, 0x01, 4], RCISH: [CTX.ACTLR, 0x01, 5], RCNSH: [CTX.ACTLR, 0x01, 6],
  TLBMCFG: [CTX.ACTLR, 0x03, 12], CFCFG: [CTX.ACTLR, 0x01, 14], V2PCFG: [CTX.ACTLR, 0x03, 16],
  // SCTLR
  M: [CTX.SCTLR, 0x01, 0], TRE: [CTX.SCTLR, 0x01, 1], AFE: [CTX.SCTLR, 0x01, 2],
  // BFBCR, CONTEXTIDR, PAR
  BFBDFE: [CTX.BFBCR, 0x01, 0],
  CONTEXTIDR_ASID: [CTX.CONTEXTIDR, 0xff, 0],
  FAULT: [CTX.PAR, 0x01, 0], PAR_NOFAULT_SS: [CTX.PAR, 0x01, 1],
} as const satisfies Record<string, Field>;
const GF = {
  // CR
  RPUE: [GLOBAL.CR, 0x01, 0], RPUEIE: [GLOBAL.CR, 0x01, 2], TLBLKCRWE: [GLOBAL.CR, 0x01, 6],
  // TESTBUSCR
  TBE: [GLOBAL.TESTBUSCR, 0x01, 0], SPDMBE: [GLOBAL.TESTBUSCR, 0x01, 1],
} as const satisfies Record<string, Field>;
/** Fields of the numbered registers: M2VCBR_N (per MID) and CBACR_N (per context), [mask, shift]. */
const M2VCBR = { VMID: [0x1f, 0], CBNDX: [0xff, 8], BPRCOSH: [0x01, 17], BPRCISH: [0x01, 18], BPRCNSH: [0x01, 19], BPSHCFG: [0x03, 20], NSCFG: [0x03, 22], BPMTCFG: [0x01, 24] } as const;
const CBACR = { CBVMID: [0x1f, 16], IRPTNDX: [0xff, 24] } as const;
const TLBIVA_VA = 0xfffff000;
const V2Pxx_VA = 0xfffff000;

// ---- io-pgtable-arm-v7s as msm_iommu configures it (coherent_walk false) ----------------------------------------
const V7S_TTBR_S = 0x2;
const V7S_PRRR = 0x800b8204;
const V7S_NMRR = 0x40004000;
const V7S_TCR = 0;

/** The MMIO window as readl/writel see it. */
interface Window {
  readl(off: number): Promise<number>;
  writel(v: number, off: number): Promise<void>;
}

/** The driver's register macros and functions over a window (the code is ours; the sequence is the driver's). */
class MsmDriver {
  constructor(readonly w: Window) {}
  // SET_GLOBAL_REG / GET_GLOBAL_REG / SET_CTX_REG / GET_CTX_REG
  setG(reg: number, v: number) {
    return this.w.writel(v >>> 0, reg);
  }
  getG(reg: number) {
    return this.w.readl(reg);
  }
  setC(reg: number, ctx: number, v: number) {
    return this.w.writel(v >>> 0, reg + (ctx << CTX_SHIFT));
  }
  getC(reg: number, ctx: number) {
    return this.w.readl(reg + (ctx << CTX_SHIFT));
  }
  /** SET_FIELD: read, clear the field, add the new value, write. */
  async setField(addr: number, mask: number, shift: number, v: number) {
    const t = await this.w.readl(addr);
    await this.w.writel(((t & ~(mask << shift)) + ((v & mask) << shift)) >>> 0, addr);
  }
  async getField(addr: number, mask: number, shift: number) {
    return ((await this.w.readl(addr)) >>> shift) & mask;
  }
  setCF([reg, mask, shift]: Field, ctx: number, v: number) {
    return this.setField(reg + (ctx << CTX_SHIFT), mask, shift, v);
  }
  getCF([reg, mask, shift]: Field, ctx: number) {
    return this.getField(reg + (ctx << CTX_SHIFT), mask, shift);
  }
  setGF([reg, mask, shift]: Field, v: number) {
    return this.setField(reg, mask, shift, v);
  }
  setM2V(mid: number, [mask, shift]: readonly [number, number], v: number) {
    return this.setField((mid << 2) | GLOBAL.M2VCBR_N, mask, shift, v);
  }
  setCbacr(ctx: number, [mask, shift]: readonly [number, number], v: number) {
    return this.setField((ctx << 2) | GLOBAL.CBACR_N, mask, shift, v);
  }

  /** msm_iommu_reset: globals, then every bank. */
  async reset(ncb: number) {
    await this.setGF(GF.RPUE, 0);
    await this.setGF(GF.RPUEIE, 0);
    await this.setG(GLOBAL.ESRRESTORE, 0);
    await this.setGF(GF.TBE, 0);
    await this.setG(GLOBAL.CR, 0);
    await this.setGF(GF.SPDMBE, 0);
    await this.setG(GLOBAL.TESTBUSCR, 0);
    await this.setG(GLOBAL.TLBRSW, 0);
    await this.setG(GLOBAL.GLOBAL_TLBIALL, 0);
    await this.setG(GLOBAL.RPU_ACR, 0);
    await this.setGF(GF.TLBLKCRWE, 1);
    for (let ctx = 0; ctx < ncb; ctx++) {
      await this.resetContext(ctx);
      await this.setC(CTX.CONTEXTIDR, ctx, 0);
    }
  }

  /** msm_iommu_probe after the reset: a V2P probe on bank 0 whose PAR must not read 0 ("Invalid PAR value"). */
  async probe(ncb: number): Promise<number> {
    await this.reset(ncb);
    await this.setCF(F.M, 0, 1);
    await this.setC(CTX.PAR, 0, 0);
    await this.setCF(F.V2PCFG, 0, 1);
    await this.setC(CTX.V2PPR, 0, 0);
    const par = await this.getC(CTX.PAR, 0);
    await this.setCF(F.V2PCFG, 0, 0);
    await this.setCF(F.M, 0, 0);
    return par;
  }

  /** __reset_context: the M2VCBR_N bypass fields (indexed by the context number, as the driver does) and the bank. */
  async resetContext(ctx: number) {
    for (const f of [M2VCBR.BPRCOSH, M2VCBR.BPRCISH, M2VCBR.BPRCNSH, M2VCBR.BPSHCFG, M2VCBR.BPMTCFG]) await this.setM2V(ctx, f, 0);
    for (const r of [CTX.ACTLR, CTX.SCTLR, CTX.FSRRESTORE, CTX.TTBR0, CTX.TTBR1, CTX.TTBCR, CTX.BFBCR, CTX.PAR, CTX.FAR, CTX.CTX_TLBIALL, CTX.TLBFLPTER, CTX.TLBSLPTER, CTX.TLBLCKR]) {
      await this.setC(r, ctx, 0);
    }
  }

  /** config_mids: route each MID to the context, VMID 0, ASID = context number, non-secure. */
  async configMids(ctx: number, mids: readonly number[]) {
    for (const mid of mids) {
      await this.setG(GLOBAL.M2VCBR_N + (mid << 2), 0);
      await this.setG(GLOBAL.CBACR_N + (ctx << 2), 0);
      await this.setM2V(mid, M2VCBR.VMID, 0);
      await this.setM2V(mid, M2VCBR.CBNDX, ctx);
      await this.setCbacr(ctx, CBACR.CBVMID, 0);
      await this.setCF(F.CONTEXTIDR_ASID, ctx, ctx);
      await this.setM2V(mid, M2VCBR.NSCFG, 3);
    }
  }

  /** __program_context with the io-pgtable-v7s configuration. */
  async programContext(ctx: number, ttbr: number) {
    await this.resetContext(ctx);
    await this.setCF(F.TRE, ctx, 1);
    await this.setCF(F.AFE, ctx, 1);
    await this.setCF(F.TLBMCFG, ctx, 0x3);
    await this.setCF(F.V2PCFG, ctx, 0x3);
    await this.setC(CTX.TTBCR, ctx, V7S_TCR);
    await this.setC(CTX.TTBR0, ctx, ttbr);
    await this.setC(CTX.TTBR1, ctx, 0);
    await this.setC(CTX.PRRR, ctx, V7S_PRRR);
    await this.setC(CTX.NMRR, ctx, V7S_NMRR);
    await this.setC(CTX.CTX_TLBIALL, ctx, 0);
    await this.setCbacr(ctx, CBACR.IRPTNDX, 0);
    await this.setCF(F.CFEIE, ctx, 1);
    await this.setCF(F.CFCFG, ctx, 1);
    await this.setCF(F.RCISH, ctx, 1);
    await this.setCF(F.RCOSH, ctx, 1);
    await this.setCF(F.RCNSH, ctx, 1);
    await this.setCF(F.BFBDFE, ctx, 1);
    await this.setCF(F.M, ctx, 1);
  }

  /** __flush_iotlb (tlb_flush_all): CTX_TLBIALL on every attached context. */
  async flushIotlb(ctxs: readonly number[]) {
    for (const ctx of ctxs) await this.setC(CTX.CTX_TLBIALL, ctx, 0);
  }

  /** __flush_iotlb_range: TLBIVA per granule, tagged with the ASID read back from CONTEXTIDR. */
  async flushIotlbRange(ctxs: readonly number[], iova: number, size: number, granule: number) {
    for (const ctx of ctxs) {
      let tempSize = size;
      do {
        iova = (iova & TLBIVA_VA) >>> 0;
        iova = (iova | (await this.getCF(F.CONTEXTIDR_ASID, ctx))) >>> 0;
        await this.setC(CTX.TLBIVA, ctx, iova);
        iova += granule;
      } while ((tempSize -= granule));
    }
  }

  /**
   * msm_iommu_fault_handler: every bank whose FSR is not 0 is logged (print_ctx_regs) and cleared with 0x4000000F.
   * Returns what the driver logged, per bank.
   */
  async faultHandler(ncb: number): Promise<Array<Record<string, string>>> {
    const logged: Array<Record<string, string>> = [];
    for (let i = 0; i < ncb; i++) {
      if (await this.getC(CTX.FSR, i)) {
        const log: Record<string, string> = { ctx: String(i) };
        for (const r of ['FSR', 'FAR', 'PAR', 'FSYNR0', 'FSYNR1', 'TTBR0', 'TTBR1', 'SCTLR', 'ACTLR'] as const) log[r] = hexv(await this.getC(CTX[r], i));
        logged.push(log);
        await this.setC(CTX.FSR, i, 0x4000000f);
      }
    }
    return logged;
  }

  /** msm_iommu_iova_to_phys: CTX_TLBIALL, V2PPR, then PAR decoded (0 on a fault). */
  async iovaToPhys(ctx: number, va: number): Promise<number> {
    await this.setC(CTX.CTX_TLBIALL, ctx, 0);
    await this.setC(CTX.V2PPR, ctx, va & V2Pxx_VA);
    const par = await this.getC(CTX.PAR, ctx);
    let ret = (await this.getCF(F.PAR_NOFAULT_SS, ctx)) ? (par & 0xff000000) | (va & 0x00ffffff) : (par & 0xfffff000) | (va & 0x00000fff);
    if (await this.getCF(F.FAULT, ctx)) ret = 0;
    return ret >>> 0;
  }
}

const hexv = (n: number) => '0x' + (n >>> 0).toString(16);

/** What the scenarios need besides the window: the IOMMU API builds the tables (as io-pgtable would), devices access. */
interface Host {
  window(smmu: string): Window;
  /** A page table built through the IOMMU API and never attached there: its L1 address. */
  table(maps: Array<[iova: number, paddr: number, size: number]>): Promise<{ did: string; l1: number }>;
  unmap(did: string, iova: number, size: number): Promise<void>;
  access(device: string, iova: number, access: 'read' | 'write'): Promise<{ outcome: string; paddr?: number; tlb?: string; stale?: boolean; stall?: string }>;
  stalls(smmu: string, ctx: number): Promise<string[]>;
  /** GET .../contexts/:ctx: the fault behaviour the view reports, and the API setting. */
  view(smmu: string, ctx: number): Promise<{ faultMode: string; faultInterrupt: boolean; settings: { faultMode: string; faultInterrupt: boolean } }>;
}

function libraryHost(s: Session): Host {
  const run = (cmd: Parameters<Session['run']>[1]) => s.run(null, cmd).result;
  return {
    window: (smmu) => ({
      async readl(off) {
        return (run({ op: 'mmio', smmu, ops: [{ op: 'read', offset: off }] }) as Array<{ value: number }>)[0]!.value;
      },
      async writel(v, off) {
        run({ op: 'mmio', smmu, ops: [{ op: 'write', offset: off, value: v }] });
      },
    }),
    async table(maps) {
      const d = run({ op: 'domain-alloc', flushPolicy: 'deferred' }) as { id: string; table: { l1: number } };
      for (const [iova, paddr, size] of maps) run({ op: 'map', did: d.id, iova, paddr, size, prot: ['read', 'write'] });
      return { did: d.id, l1: d.table.l1 };
    },
    async unmap(did, iova, size) {
      run({ op: 'unmap', did, iova, size });
    },
    async access(device, iova, access) {
      const r = run({ op: 'access', device, iova, access }) as { outcome: string; paddr?: number; tlb?: string; stale?: boolean; stall?: string };
      return { outcome: r.outcome, ...(r.paddr !== undefined ? { paddr: r.paddr, tlb: r.tlb, stale: r.stale ?? false } : {}), ...(r.stall ? { stall: r.stall } : {}) };
    },
    async stalls(smmu, ctx) {
      return s.soc.smmu(smmu).banks[ctx]!.stalls.map((x) => x.id);
    },
    async view(smmu, ctx) {
      const v = contextView(s.soc.smmu(smmu), s.soc.smmu(smmu).banks[ctx]!);
      return { faultMode: v.faultMode, faultInterrupt: v.faultInterrupt, settings: v.settings! };
    },
  };
}

function httpHost(c: Client): Host {
  return {
    window: (smmu) => ({
      async readl(off) {
        const r = await c.call('GET', `/smmus/${smmu}/mmio/${hexv(off)}`);
        if (r.status !== 200) throw new Error(`readl ${hexv(off)}: ${JSON.stringify(r.body)}`);
        return Number(r.body.value);
      },
      async writel(v, off) {
        const r = await c.call('PUT', `/smmus/${smmu}/mmio/${hexv(off)}`, { value: hexv(v) });
        if (r.status !== 200) throw new Error(`writel ${hexv(off)}: ${JSON.stringify(r.body)}`);
      },
    }),
    async table(maps) {
      const d = (await c.call('POST', '/domains', { flushPolicy: 'deferred' })).body;
      for (const [iova, paddr, size] of maps) await c.call('POST', `/domains/${d.id}/map`, { iova: hexv(iova), paddr: hexv(paddr), size, prot: ['read', 'write'] });
      return { did: d.id, l1: Number(d.ttbr0) };
    },
    async unmap(did, iova, size) {
      await c.call('POST', `/domains/${did}/unmap`, { iova: hexv(iova), size });
    },
    async access(device, iova, access) {
      const r = (await c.call('POST', `/devices/${device}/access`, { iova: hexv(iova), access })).body;
      return { outcome: r.outcome, ...(r.paddr !== undefined ? { paddr: Number(r.paddr), tlb: r.tlb, stale: r.stale ?? false } : {}), ...(r.stall ? { stall: r.stall } : {}) };
    },
    async stalls(smmu, ctx) {
      return (await c.call('GET', `/smmus/${smmu}/contexts/${ctx}`)).body.stalls.map((x: { stall: string }) => x.stall);
    },
    async view(smmu, ctx) {
      const v = (await c.call('GET', `/smmus/${smmu}/contexts/${ctx}`)).body;
      return { faultMode: v.faultMode, faultInterrupt: v.faultInterrupt, settings: v.settings! };
    },
  };
}

// The vfe SMMU of msm8x60: two banks, vfe_imgwr (bank 0, MIDs 2-8) and vfe_misc (bank 1, MIDs 0, 1, 9).
const SMMU = 'vfe';
const NCB = 2;
const CTX_MISC = 1;
const MIDS_MISC = [0, 1, 9];

function scenarios(name: string, setup: () => Promise<{ host: Host; done?: () => Promise<unknown> }>) {
  describe(`${name}: the msm_iommu driver's register sequences over the MMIO window`, () => {
    let host: Host;
    let drv: MsmDriver;
    let done: (() => Promise<unknown>) | undefined;
    beforeAll(async () => {
      ({ host, done } = await setup());
      drv = new MsmDriver(host.window(SMMU));
    });
    afterAll(async () => {
      await done?.();
    });

    it('probe: msm_iommu_reset leaves every register the driver writes as written, and the PAR check passes', async () => {
      const par = await drv.probe(NCB);
      // TTBR0 = 0 walks an L1 table at PA 0, outside RAM: the probe faults with a table-walk slave error, which
      // is not 0, so the probe goes on.
      expect(hexv(par)).toBe('0x41'); // FAULT | HTWSEEF
      expect(hexv(await drv.getG(GLOBAL.CR))).toBe('0x40'); // TLBLKCRWE only
      for (const r of ['ESRRESTORE', 'TESTBUSCR', 'TLBRSW', 'RPU_ACR', 'ESR'] as const) expect(hexv(await drv.getG(GLOBAL[r])), r).toBe('0x0');
      for (let ctx = 0; ctx < NCB; ctx++) {
        for (const r of ['SCTLR', 'ACTLR', 'FSRRESTORE', 'TTBR0', 'TTBR1', 'TTBCR', 'BFBCR', 'FAR', 'TLBFLPTER', 'TLBSLPTER', 'TLBLCKR', 'CONTEXTIDR', 'FSR'] as const) {
          expect(hexv(await drv.getC(CTX[r], ctx)), `ctx ${ctx} ${r}`).toBe('0x0');
        }
      }
      expect(hexv(await drv.getC(CTX.PAR, 0))).toBe('0x41'); // the probe's result stays in PAR
    });

    it('attach: config_mids and __program_context compose every field through read-modify-write; the bank translates', async () => {
      const t = await host.table([[0x10000000, 0x41000000, 0x1000], [0x10010000, 0x41010000, 0x10000], [0x10100000, 0x41100000, 0x100000], [0x11000000, 0x42000000, 0x1000000]]);
      await drv.configMids(CTX_MISC, MIDS_MISC);
      await drv.programContext(CTX_MISC, t.l1 | V7S_TTBR_S);
      for (const mid of MIDS_MISC) expect(hexv(await drv.getG(GLOBAL.M2VCBR_N + (mid << 2))), `M2VCBR_N[${mid}]`).toBe(hexv((3 << 22) | (CTX_MISC << 8)));
      expect(hexv(await drv.getG(GLOBAL.CBACR_N + (CTX_MISC << 2)))).toBe('0x0');
      const regs = async (...names: Array<keyof typeof CTX>) => Object.fromEntries(await Promise.all(names.map(async (n) => [n, hexv(await drv.getC(CTX[n], CTX_MISC))])));
      expect(await regs('SCTLR', 'ACTLR', 'CONTEXTIDR', 'TTBR0', 'TTBR1', 'TTBCR', 'PRRR', 'NMRR', 'BFBCR', 'FSR')).toEqual({
        SCTLR: '0x7', // M, TRE, AFE
        ACTLR: '0x37072', // CFEIE, RCOSH, RCISH, RCNSH, TLBMCFG = 3, CFCFG, V2PCFG = 3
        CONTEXTIDR: hexv(CTX_MISC),
        TTBR0: hexv(t.l1 | 0x2),
        TTBR1: '0x0',
        TTBCR: '0x0',
        PRRR: '0x800b8204',
        NMRR: '0x40004000',
        BFBCR: '0x1', // BFBDFE
        FSR: '0x0',
      });
      expect(await host.access('vfe_misc', 0x10000abc, 'read')).toEqual({ outcome: 'ok', paddr: 0x41000abc, tlb: 'miss', stale: false });
      expect(await host.access('vfe_misc', 0x11abc123, 'write')).toEqual({ outcome: 'ok', paddr: 0x42abc123, tlb: 'miss', stale: false });
      // iova_to_phys through V2PPR/PAR for each page size; an unmapped iova gives 0.
      expect(hexv(await drv.iovaToPhys(CTX_MISC, 0x10000abc))).toBe('0x41000abc');
      expect(hexv(await drv.iovaToPhys(CTX_MISC, 0x1001f123))).toBe('0x4101f123');
      expect(hexv(await drv.iovaToPhys(CTX_MISC, 0x101ff456))).toBe('0x411ff456');
      expect(hexv(await drv.iovaToPhys(CTX_MISC, 0x11abc123))).toBe('0x42abc123');
      expect(hexv(await drv.iovaToPhys(CTX_MISC, 0x20000000))).toBe('0x0');
      expect(hexv(await drv.getC(CTX.FSR, CTX_MISC))).toBe('0x0'); // a probe's fault goes to PAR only
    });

    it('__flush_iotlb_range drops exactly the pages it names (ASID read back from CONTEXTIDR); __flush_iotlb drops all', async () => {
      const t = await host.table([[0x30000000, 0x43000000, 0x4000]]);
      await drv.configMids(CTX_MISC, MIDS_MISC);
      await drv.programContext(CTX_MISC, t.l1 | V7S_TTBR_S);
      for (const iova of [0x30000000, 0x30001000, 0x30002000, 0x30003000]) expect((await host.access('vfe_misc', iova, 'read')).tlb).toBe('miss');
      // io-pgtable clears the PTEs; the driver's flush comes after. Until then the TLB answers, stale.
      await host.unmap(t.did, 0x30000000, 0x4000);
      expect(await host.access('vfe_misc', 0x30001000, 'read')).toEqual({ outcome: 'ok', paddr: 0x43001000, tlb: 'hit', stale: true });
      await drv.flushIotlbRange([CTX_MISC], 0x30001000, 0x2000, 0x1000);
      expect((await host.access('vfe_misc', 0x30000000, 'read')).stale).toBe(true); // not in the range
      expect((await host.access('vfe_misc', 0x30003000, 'read')).stale).toBe(true);
      await drv.flushIotlb([CTX_MISC]);
      expect((await host.access('vfe_misc', 0x30000000, 'read')).outcome).toBe('stalled'); // CFCFG: the fault stalls
      await drv.faultHandler(NCB);
    });

    it('the view reports the fault behaviour ACTLR holds: stall with interrupt, as __program_context wrote it', async () => {
      expect(await host.view(SMMU, CTX_MISC)).toEqual({ faultMode: 'stall', faultInterrupt: true, settings: { faultMode: 'terminate', faultInterrupt: true } });
      await drv.setCF(F.CFCFG, CTX_MISC, 0);
      await drv.setCF(F.CFEIE, CTX_MISC, 0);
      expect(await host.view(SMMU, CTX_MISC)).toMatchObject({ faultMode: 'terminate', faultInterrupt: false });
      await drv.setCF(F.CFCFG, CTX_MISC, 1);
      await drv.setCF(F.CFEIE, CTX_MISC, 1);
      expect(await host.view(SMMU, CTX_MISC)).toMatchObject({ faultMode: 'stall', faultInterrupt: true });
    });

    it("fault handler: print_ctx_regs reads the fault; FSR = 0x4000000F terminates the stall, FSR reads 0; 70 faults in a row stay below the stall limit", async () => {
      const t = await host.table([]);
      await drv.configMids(CTX_MISC, MIDS_MISC);
      await drv.programContext(CTX_MISC, t.l1 | V7S_TTBR_S);
      const st = await host.access('vfe_misc', 0x50000010, 'write');
      expect(st.outcome).toBe('stalled');
      expect(await host.stalls(SMMU, CTX_MISC)).toEqual([st.stall]);
      const logged = await drv.faultHandler(NCB);
      expect(logged).toEqual([
        { ctx: '1', FSR: '0x40000002', FAR: '0x50000010', PAR: '0x0', FSYNR0: '0x0', FSYNR1: '0x100', TTBR0: hexv(t.l1 | 0x2), TTBR1: '0x0', SCTLR: '0x7', ACTLR: '0x37072' },
      ]);
      expect(hexv(await drv.getC(CTX.FSR, CTX_MISC))).toBe('0x0');
      expect(await host.stalls(SMMU, CTX_MISC)).toEqual([]);
      // The driver never writes RESUME: without the SS clear terminating stalls they would pile up to the limit.
      for (let i = 0; i < 70; i++) {
        expect((await host.access('vfe_misc', 0x50000000 + i * 0x1000, 'read')).outcome).toBe('stalled');
        expect((await drv.faultHandler(NCB)).map((l) => [l.ctx, l.FSR, l.FAR])).toEqual([['1', '0x40000002', hexv(0x50000000 + i * 0x1000)]]);
        expect(await host.stalls(SMMU, CTX_MISC)).toEqual([]);
      }
      // Two faults before the handler runs: MULTI, which 0x4000000F does not clear; both stalls end.
      await host.access('vfe_misc', 0x51000000, 'read');
      await host.access('vfe_misc', 0x52000000, 'read');
      expect((await drv.faultHandler(NCB)).map((l) => [l.FSR, l.FAR])).toEqual([['0xc0000002', '0x51000000']]);
      expect(hexv(await drv.getC(CTX.FSR, CTX_MISC))).toBe('0x80000000');
      expect(await host.stalls(SMMU, CTX_MISC)).toEqual([]);
      await drv.setC(CTX.FSR, CTX_MISC, 0x80000000);
      expect(hexv(await drv.getC(CTX.FSR, CTX_MISC))).toBe('0x0');
    });

    it('detach: __reset_context leaves a pending stall (and SS) until FSR.SS is cleared; the bank then bypasses', async () => {
      const t = await host.table([]);
      await drv.configMids(CTX_MISC, MIDS_MISC);
      await drv.programContext(CTX_MISC, t.l1 | V7S_TTBR_S);
      const st = await host.access('vfe_misc', 0x60000000, 'read');
      expect(st.outcome).toBe('stalled');
      await drv.flushIotlb([CTX_MISC]);
      await drv.resetContext(CTX_MISC);
      const regs = async (...names: Array<keyof typeof CTX>) => Object.fromEntries(await Promise.all(names.map(async (n) => [n, hexv(await drv.getC(CTX[n], CTX_MISC))])));
      expect(await regs('SCTLR', 'ACTLR', 'TTBR0', 'TTBR1', 'TTBCR', 'BFBCR', 'PAR', 'FAR', 'TLBFLPTER', 'TLBSLPTER', 'TLBLCKR', 'FSRRESTORE', 'FSR', 'CONTEXTIDR')).toEqual({
        SCTLR: '0x0', ACTLR: '0x0', TTBR0: '0x0', TTBR1: '0x0', TTBCR: '0x0', BFBCR: '0x0', PAR: '0x0', FAR: '0x0', TLBFLPTER: '0x0', TLBSLPTER: '0x0', TLBLCKR: '0x0', FSRRESTORE: '0x0',
        FSR: '0x40000000', // FSRRESTORE = 0 restored every bit but SS: the stall is still pending
        CONTEXTIDR: hexv(CTX_MISC), // __reset_context does not write it
      });
      // The bypass fields of M2VCBR_N[ctx] are cleared; its CBNDX and NSCFG stay.
      expect(hexv(await drv.getG(GLOBAL.M2VCBR_N + (CTX_MISC << 2)))).toBe(hexv((3 << 22) | (CTX_MISC << 8)));
      expect(await host.stalls(SMMU, CTX_MISC)).toEqual([st.stall]);
      expect(await host.view(SMMU, CTX_MISC)).toMatchObject({ faultMode: 'terminate', faultInterrupt: false });
      expect(await host.access('vfe_misc', 0x60000000, 'read')).toEqual({ outcome: 'ok', paddr: 0x60000000, tlb: 'bypass', stale: false });
      await drv.setC(CTX.FSR, CTX_MISC, 0x4000000f);
      expect(await host.stalls(SMMU, CTX_MISC)).toEqual([]);
      expect(hexv(await drv.getC(CTX.FSR, CTX_MISC))).toBe('0x0');
    });
  });
}

scenarios('library', async () => ({ host: libraryHost(msmSession()) }));
scenarios('HTTP', async () => {
  const c = await client();
  return { host: httpHost(c), done: () => c.app.close() };
});

describe('stalls end with SS and never outlive the API detach', () => {
  it('SS reads 1 exactly while a stall is pending: FSRRESTORE cannot clear or fake it; the API detach terminates', () => {
    const s = msmSession();
    const bank = msmDevice(s, 'vfe_misc').bank;
    const events: Array<{ type: string; action?: unknown }> = [];
    s.bus.subscribe((e) => events.push(e));
    const w = (offset: number, value: number) => s.run(null, { op: 'mmio', smmu: SMMU, ops: [{ op: 'write', offset: offset + (CTX_MISC << CTX_SHIFT), value }] });
    w(CTX.FSRRESTORE, 0x40000002);
    expect(hexv(bank.FSR)).toBe('0x2'); // no stall: SS is not restored
    w(CTX.FSR, 0x2);
    s.run(null, { op: 'context-config', smmu: SMMU, ctx: 'vfe_misc', faultMode: 'stall' });
    const d = s.iommu.domainAlloc({});
    s.iommu.attach(d.id, 'vfe_misc');
    const r = s.run(null, { op: 'access', device: 'vfe_misc', iova: 0x1000, access: 'read' }).result as { outcome: string; stall: string };
    expect(r.outcome).toBe('stalled');
    w(CTX.FSRRESTORE, 0);
    expect(hexv(bank.FSR)).toBe('0x40000000');
    s.run(null, { op: 'access', device: 'vfe_misc', iova: 0x2000, access: 'read' });
    expect(bank.stalls).toHaveLength(2);
    s.iommu.detach(d.id, 'vfe_misc');
    expect(bank.stalls).toEqual([]);
    expect(hexv(bank.FSR)).toBe('0x0');
    expect(events.filter((e) => e.type === 'resume').map((e) => e.action)).toEqual(['terminate', 'terminate']);
  });
});

describe('a stall without the fault interrupt still times out', () => {
  afterEach(() => {
    vi.useRealTimers();
  });
  it('CFCFG = 1, CFEIE = 0 over MMIO: no stall event, yet the session terminates the stall after stallTimeoutMs', () => {
    vi.useFakeTimers();
    const s = new Session({ id: 's-msm', name: 'msm', profile: MSM8X60, stallTimeoutMs: 1000 });
    const events: Array<{ type: string; action?: unknown }> = [];
    s.bus.subscribe((e) => events.push(e));
    const w = (offset: number, value: number) => s.run(null, { op: 'mmio', smmu: SMMU, ops: [{ op: 'write', offset: offset + (CTX_MISC << CTX_SHIFT), value }] });
    w(CTX.ACTLR, (3 << 12) | (1 << 14)); // TLBMCFG = 3, CFCFG; CFEIE clear
    w(CTX.TTBR0, 0x5f000000 | V7S_TTBR_S); // the pool's first (empty) L1 table
    w(CTX.SCTLR, 0x7);
    expect((s.run(null, { op: 'access', device: 'vfe_misc', iova: 0x1000, access: 'read' }).result as { outcome: string }).outcome).toBe('stalled');
    expect(events.filter((e) => e.type === 'stall' || e.type === 'fault')).toEqual([]);
    vi.advanceTimersByTime(999);
    expect(s.soc.device('vfe_misc').bank.stalls).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(s.soc.device('vfe_misc').bank.stalls).toEqual([]);
    expect(events.filter((e) => e.type === 'resume').map((e) => e.action)).toEqual(['timeout']);
    expect(hexv(msmDevice(s, 'vfe_misc').bank.FSR)).toBe('0x2');
    s.close();
  });
});

describe('every register msm_iommu_hw-8xxx.h defines is decoded, stored and read back (vfe SMMU)', () => {
  // Registers that only act when written (invalidations, V2P probes, RESUME) read as 0; REV and IDR are read-only.
  const OPERATIONS = new Set(['CTX_TLBIALL', 'TLBIASID', 'TLBIVA', 'TLBIVAA', 'V2PPR', 'V2PPW', 'V2PUR', 'V2PUW', 'RESUME', 'GLOBAL_TLBIALL', 'TLBIVMID']);
  const READ_ONLY = new Set(['REV', 'IDR', 'V2PSR']);
  // Write-1-to-clear (FSR, ESR) and the restore registers have their own tests.
  const SPECIAL = new Set(['FSR', 'ESR', 'FSRRESTORE', 'ESRRESTORE']);

  it('each offset decodes to the header name; stored registers read back what was written', async () => {
    const s = msmSession();
    const run = (ops: Array<{ op: 'read' | 'write'; offset: number; value?: number }>) => s.run(null, { op: 'mmio', smmu: SMMU, ops }).result as Array<{ name: string; value: number }>;
    const all: Array<[string, number]> = [
      ...Object.entries(CTX).map(([n, o]) => [n, o + (1 << CTX_SHIFT)] as [string, number]),
      ...Object.entries(GLOBAL).map(([n, o]) => [n, n === 'M2VCBR_N' ? o + 4 * 9 : n === 'CBACR_N' ? o + 4 : o] as [string, number]),
    ];
    for (const [name, off] of all) {
      expect(run([{ op: 'read', offset: off }])[0]!.name, hexv(off)).toBe(name);
      if (OPERATIONS.has(name) || READ_ONLY.has(name) || SPECIAL.has(name) || name === 'SCTLR' || name === 'TTBR0') continue;
      const pattern = 0xa5a50000 | off >>> 2; // distinct per register
      run([{ op: 'write', offset: off, value: pattern >>> 0 }]);
      expect(hexv(run([{ op: 'read', offset: off }])[0]!.value), name).toBe(hexv(pattern));
    }
    for (const name of OPERATIONS) {
      const off = name in CTX ? CTX[name as keyof typeof CTX] + (1 << CTX_SHIFT) : GLOBAL[name as keyof typeof GLOBAL];
      expect(hexv(run([{ op: 'read', offset: off }])[0]!.value), name).toBe('0x0');
    }
    const rev = run([{ op: 'read', offset: GLOBAL.REV }])[0]!.value;
    run([{ op: 'write', offset: GLOBAL.REV, value: 0 }]);
    expect(run([{ op: 'read', offset: GLOBAL.REV }])[0]!.value).toBe(rev);
    expect([(rev >>> 4) & 0xf, rev & 0xf]).toEqual([1, 0]); // MAJOR, MINOR
    const idr = run([{ op: 'read', offset: GLOBAL.IDR }])[0]!.value;
    // NCB (23:16) = banks - 1, TLBSIZE (15:12) = log2 of 128 entries, HUM (b10) 0, HTW (b9) 1, NM2VCBMT (8:0).
    expect([(idr >>> 16) & 0xff, (idr >>> 12) & 0xf, (idr >>> 10) & 1, (idr >>> 9) & 1, idr & 0x1ff]).toEqual([NCB - 1, 7, 0, 1, 255]);
  });

  it('ESRRESTORE is stored and restores ESR, which is write-1-to-clear; TLBIVMID invalidates the banks of that VMID', async () => {
    const s = msmSession();
    const w = (offset: number, value: number) => s.run(null, { op: 'mmio', smmu: SMMU, ops: [{ op: 'write', offset, value }] });
    const r = (offset: number) => (s.run(null, { op: 'mmio', smmu: SMMU, ops: [{ op: 'read', offset }] }).result as Array<{ value: number }>)[0]!.value;
    w(GLOBAL.ESRRESTORE, 0x80000003);
    expect([hexv(r(GLOBAL.ESRRESTORE)), hexv(r(GLOBAL.ESR))]).toEqual(['0x80000003', '0x80000003']);
    w(GLOBAL.ESR, 0x1);
    expect([hexv(r(GLOBAL.ESRRESTORE)), hexv(r(GLOBAL.ESR))]).toEqual(['0x80000003', '0x80000002']);
    // TLBIVMID: bank 0 at VMID 0, bank 1 moved to VMID 5; both have TLB entries.
    const d = s.iommu.domainAlloc({});
    s.iommu.map(d.id, 0x1000, 0x40000000, 0x1000, 3);
    s.iommu.attach(d.id, 'vfe_imgwr');
    s.iommu.attach(d.id, 'vfe_misc');
    s.run(null, { op: 'access', device: 'vfe_imgwr', iova: 0x1000, access: 'read' });
    s.run(null, { op: 'access', device: 'vfe_misc', iova: 0x1000, access: 'read' });
    const tlb = (s.soc.smmu(SMMU) as MsmSmmu).tlb;
    w(GLOBAL.CBACR_N + 4, 5 << 16);
    w(GLOBAL.TLBIVMID, 5);
    expect([tlb.entries(0).length, tlb.entries(1).length]).toEqual([1, 0]);
    w(GLOBAL.TLBIVMID, 0);
    expect([tlb.entries(0).length, tlb.entries(1).length]).toEqual([0, 0]);
  });
});
