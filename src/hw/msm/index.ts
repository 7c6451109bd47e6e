/**
 * The MSM SMMU behind the family seam. The hardware itself stays in hw/smmu.ts, hw/mmio.ts, hw/context.ts and
 * hw/regs.ts (unchanged in behaviour); this adapter gives it the IommuInstance interface: the MMIO window, the
 * driver's context programming on attach, TLB maintenance and the TLB view.
 */
import type { PgTable } from '../../pgtable/format.js';
import type { ContextBank } from '../context.js';
import type { HwContext, IommuInstance, TlbView } from '../family.js';
import { decodeOffset, readRegister, writeRegister } from '../mmio.js';
import type { SmmuSpec } from '../profile.js';
import * as R from '../regs.js';
import { Smmu, type HwEnv } from '../smmu.js';
import type { TlbPolicy } from '../tlb.js';

export const MSM_WINDOW = 0x100000;

export class MsmSmmu extends Smmu implements IommuInstance {
  readonly family = 'msm' as const;
  readonly windowSize = MSM_WINDOW;

  constructor(spec: SmmuSpec, tlbEntries: number, tlbPolicy: TlbPolicy, env: HwEnv) {
    super(spec, tlbEntries, tlbPolicy, env);
  }

  defaultMid(ctx: HwContext): number {
    return ctx.mids[0] ?? 0;
  }

  /** In force now (ACTLR.CFCFG / CFEIE, whoever wrote them); `settings` is what the API's attach programs. */
  faultSettings(ctx: HwContext): { faultMode: 'terminate' | 'stall'; faultInterrupt: boolean; settings: { faultMode: 'terminate' | 'stall'; faultInterrupt: boolean } } {
    const bank = ctx as ContextBank;
    return { faultMode: bank.effectiveFaultMode, faultInterrupt: bank.effectiveFaultInterrupt, settings: { faultMode: bank.faultMode, faultInterrupt: bank.faultInterrupt } };
  }

  enabled(ctx: HwContext): boolean {
    return ((ctx as ContextBank).SCTLR & R.SCTLR_M) !== 0;
  }

  registerName(offset: number): string {
    return decodeOffset(this, offset).name;
  }

  readRegister(offset: number): number {
    return readRegister(this, offset);
  }

  writeRegister(offset: number, value: number): { name: string; old: number; value: number } {
    return writeRegister(this, offset, value, this.sink);
  }

  registers(ctx: HwContext): Record<string, number> {
    const out: Record<string, number> = {};
    for (const name of Object.keys(R.CONTEXT_REGISTERS)) out[name] = (ctx as unknown as Record<string, number>)[name]! >>> 0;
    return out;
  }

  clearFault(ctx: HwContext, value?: number): { register: string; old: number; value: number } {
    const bank = ctx as ContextBank;
    const old = bank.FSR;
    writeRegister(this, (bank.index << 12) | R.FSR, value ?? bank.FSR, this.sink);
    return { register: 'FSR', old, value: bank.FSR };
  }

  tlbView(ctx?: HwContext): TlbView {
    const t = this.tlbStats(ctx as ContextBank | undefined);
    return {
      entries: ctx ? this.tlb.entries(ctx.index).length : this.tlb.size,
      capacity: this.tlb.capacity,
      policy: this.tlb.policy,
      hits: t.hits,
      misses: t.misses,
      evictions: t.evictions,
      invalidations: t.invalidations,
    };
  }

  /** The driver's context programming on attach (HARDWARE.md), through the same register fields MMIO reads. */
  attachContext(ctx: HwContext, table: PgTable, domain: string): void {
    const bank = ctx as ContextBank;
    bank.reset();
    bank.ACTLR =
      (R.ACTLR_TLBMCFG_WALK << R.ACTLR_TLBMCFG_SHIFT) |
      (3 << R.ACTLR_V2PCFG_SHIFT) |
      (bank.faultInterrupt ? R.ACTLR_CFEIE : 0) |
      (bank.faultMode === 'stall' ? R.ACTLR_CFCFG : 0);
    bank.TTBCR = 0;
    bank.TTBR0 = (table.root | R.TTBR0_WALK_ATTRS) >>> 0;
    bank.TTBR1 = 0;
    bank.PRRR = R.PRRR_ATTACH;
    bank.NMRR = R.NMRR_ATTACH;
    bank.CONTEXTIDR = bank.index;
    for (const mid of bank.mids) this.setM2vcbr(mid, bank.index << 8);
    this.tlb.invalidateAll(bank.index);
    bank.SCTLR = R.SCTLR_ATTACH;
    bank.domain = domain;
  }

  switchContext(ctx: HwContext, table: PgTable, domain: string): void {
    const bank = ctx as ContextBank;
    bank.domain = domain;
    bank.TTBR0 = (table.root | R.TTBR0_WALK_ATTRS) >>> 0;
    this.tlb.invalidateAll(bank.index);
  }

  /** Stalls terminated, bank reset to 0, its TLB entries invalidated. */
  detachContext(ctx: HwContext): void {
    const bank = ctx as ContextBank;
    this.terminateStalls(bank);
    bank.reset();
    bank.domain = null;
    this.tlb.invalidateAll(bank.index);
  }

  flushContext(ctx: HwContext, range?: { iova: number; size: number }): number {
    return range ? this.tlb.invalidateRange(ctx.index, range.iova, range.size) : this.tlb.invalidateAll(ctx.index);
  }

  /** What the hardware view shows of one register to say which page table the context walks. */
  tableRegister(ctx: HwContext): number {
    return (ctx as ContextBank).TTBR0;
  }
}
