import { ACTLR_CFCFG, ACTLR_CFEIE, FSR_SS, type FaultKind } from './regs.js';

export type AccessKind = 'read' | 'write' | 'exec';
export const ACCESS_READ = 0;
export const ACCESS_WRITE = 1;
export const ACCESS_EXEC = 2;
export const ACCESS_NAMES: readonly AccessKind[] = ['read', 'write', 'exec'];

/** The fault as the API and the event stream report it: register fields hold the values after this fault. */
export interface FaultRecord {
  smmu: string;
  context: number;
  device: string | null;
  domain: string | null;
  iova: string;
  access: AccessKind;
  priv: boolean;
  /** IOMMU_FAULT_READ 0x0 / IOMMU_FAULT_WRITE 0x1, as a fault handler receives them. */
  flags: number;
  kind: FaultKind;
  /** The IOMMU family whose registers the record carries (API.md "IOMMU families in one SoC"). */
  family: 'msm';
  fsr: string;
  fsrBits: string[];
  far: string;
  fsynr0: string;
  fsynr1: string;
  stall?: string;
}

export interface Stall {
  id: string;
  bank: number;
  iova: number;
  access: number;
  priv: boolean;
  mid: number;
  fault: FaultRecord;
  createdAt: number;
}

/**
 * One context bank: its register file and what is tied to it (stalled transactions, settings the API keeps
 * across attach/detach, a fault armed for injection). Registers are plain fields named as the hardware names them.
 */
export class ContextBank {
  SCTLR = 0;
  ACTLR = 0;
  CONTEXTIDR = 0;
  TTBR0 = 0;
  TTBR1 = 0;
  TTBCR = 0;
  PAR = 0;
  FSR = 0;
  FSRRESTORE = 0;
  FAR = 0;
  FSYNR0 = 0;
  FSYNR1 = 0;
  PRRR = 0;
  NMRR = 0;
  TLBLCKR = 0;
  V2PSR = 0;
  TLBFLPTER = 0;
  TLBSLPTER = 0;
  BFBCR = 0;
  CBACR = 0;

  /** Per-context settings (API.md): attach programs ACTLR.CFCFG / CFEIE from them. */
  faultMode: 'terminate' | 'stall' = 'terminate';
  faultInterrupt = true;
  /** Domain attached through the IOMMU API (an opaque tag for events), null when none. */
  domain: string | null = null;
  readonly stalls: Stall[] = [];
  /** A fault forced on the next transaction (test hook: external abort, multi-hit, TLB-miss fault). */
  injected: FaultKind | null = null;
  faults = 0;
  /** Transactions by path: TLB hit, TLB miss, bypass (SCTLR.M clear), injected fault. */
  tlbHits = 0;
  tlbMisses = 0;
  bypasses = 0;
  injectedFaults = 0;

  get transactions(): number {
    return this.tlbHits + this.tlbMisses + this.bypasses + this.injectedFaults;
  }

  constructor(
    readonly smmu: string,
    readonly index: number,
    readonly name: string | null,
    readonly mids: readonly number[],
  ) {}

  /**
   * Changes the per-context fault settings (what attach programs) and writes them into ACTLR at once (CFCFG:
   * stall, CFEIE: fault interrupt), as a driver rewriting ACTLR would; a detached bank bypasses, so it matters there
   * only until the next reset.
   */
  setFaultSettings(mode: 'terminate' | 'stall' | undefined, interrupt: boolean | undefined): void {
    if (mode !== undefined) this.faultMode = mode;
    if (interrupt !== undefined) this.faultInterrupt = interrupt;
    this.ACTLR = ((this.ACTLR & ~(ACTLR_CFCFG | ACTLR_CFEIE)) | (this.faultMode === 'stall' ? ACTLR_CFCFG : 0) | (this.faultInterrupt ? ACTLR_CFEIE : 0)) >>> 0;
  }

  /** The fault behaviour in force: ACTLR as it is now, whoever wrote it (the API or a driver over MMIO). */
  get effectiveFaultMode(): 'terminate' | 'stall' {
    return this.ACTLR & ACTLR_CFCFG ? 'stall' : 'terminate';
  }

  get effectiveFaultInterrupt(): boolean {
    return (this.ACTLR & ACTLR_CFEIE) !== 0;
  }

  /**
   * The bank's registers to 0 (the IOMMU API's attach and detach). Pending stalls are not touched here (detach
   * terminates them first), so FSR.SS stays set while any is left.
   */
  reset(): void {
    this.SCTLR = this.ACTLR = this.CONTEXTIDR = this.TTBR0 = this.TTBR1 = this.TTBCR = 0;
    this.PAR = this.FSRRESTORE = this.FAR = this.FSYNR0 = this.FSYNR1 = 0;
    this.FSR = this.stalls.length ? FSR_SS : 0;
    this.PRRR = this.NMRR = this.TLBLCKR = this.V2PSR = 0;
    this.TLBFLPTER = this.TLBSLPTER = this.BFBCR = 0;
  }
}

export type { FaultKind };
