/** MSM SMMU register layout (msm_iommu_hw-8xxx.h), offsets and fields as HARDWARE.md lists them. */

// Context bank registers, offsets inside the bank's 4 KiB window.
export const SCTLR = 0x000;
export const ACTLR = 0x004;
export const CONTEXTIDR = 0x008;
export const TTBR0 = 0x010;
export const TTBR1 = 0x014;
export const TTBCR = 0x018;
export const PAR = 0x01c;
export const FSR = 0x020;
export const FSRRESTORE = 0x024;
export const FAR = 0x028;
export const FSYNR0 = 0x02c;
export const FSYNR1 = 0x030;
export const PRRR = 0x034;
export const NMRR = 0x038;
export const TLBLCKR = 0x03c;
export const V2PSR = 0x040;
// TLB first/second-level PTE debug registers and the BFB (prefetch) control: stored and read back, no behaviour.
export const TLBFLPTER = 0x044;
export const TLBSLPTER = 0x048;
export const BFBCR = 0x04c;
export const CTX_TLBIALL = 0x800;
export const TLBIASID = 0x804;
export const TLBIVA = 0x808;
export const TLBIVAA = 0x80c;
export const V2PPR = 0x810;
export const V2PPW = 0x814;
export const V2PUR = 0x818;
export const V2PUW = 0x81c;
export const RESUME = 0x820;

/** The context registers that hold state, in the order the API reports them. */
export const CONTEXT_REGISTERS = {
  SCTLR,
  ACTLR,
  CONTEXTIDR,
  TTBR0,
  TTBR1,
  TTBCR,
  PAR,
  FSR,
  FSRRESTORE,
  FAR,
  FSYNR0,
  FSYNR1,
  PRRR,
  NMRR,
  TLBLCKR,
  V2PSR,
  TLBFLPTER,
  TLBSLPTER,
  BFBCR,
} as const;
export type ContextRegister = keyof typeof CONTEXT_REGISTERS;

// Global registers (offsets inside the SMMU's 1 MiB window).
export const GLOBAL_BASE = 0xff000;
export const M2VCBR_N = 0xff000;
export const CBACR_N = 0xff800;
export const TLBRSW = 0xffe00;
export const TLBTR0 = 0xffe80;
export const TLBTR1 = 0xffe84;
export const TLBTR2 = 0xffe88;
export const TESTBUSCR = 0xffe8c;
export const GLOBAL_TLBIALL = 0xfff00;
export const TLBIVMID = 0xfff04;
export const CR = 0xfff80;
export const EAR = 0xfff84;
export const ESR = 0xfff88;
export const ESRRESTORE = 0xfff8c;
export const ESYNR0 = 0xfff90;
export const ESYNR1 = 0xfff94;
export const REV = 0xffff4;
export const IDR = 0xffff8;
export const RPU_ACR = 0xffffc;

/** The single global registers (M2VCBR_N and CBACR_N are tables), as msm_iommu_hw-8xxx.h defines them. */
export const GLOBAL_REGISTERS = {
  TLBRSW,
  TLBTR0,
  TLBTR1,
  TLBTR2,
  TESTBUSCR,
  GLOBAL_TLBIALL,
  TLBIVMID,
  CR,
  EAR,
  ESR,
  ESRRESTORE,
  ESYNR0,
  ESYNR1,
  REV,
  IDR,
  RPU_ACR,
} as const;
/** Global registers that hold state (the others are operations or read-only identification). */
export const GLOBAL_STATE_REGISTERS = ['TLBRSW', 'TLBTR0', 'TLBTR1', 'TLBTR2', 'TESTBUSCR', 'CR', 'EAR', 'ESR', 'ESRRESTORE', 'ESYNR0', 'ESYNR1', 'RPU_ACR'] as const;
export type GlobalStateRegister = (typeof GLOBAL_STATE_REGISTERS)[number];

// CBACR_N fields.
export const CBACR_CBVMID_SHIFT = 16;
export const CBACR_CBVMID_MASK = 0x1f;
/** Master IDs the M2VCBR table covers. */
export const NUM_MIDS = 256;

// SCTLR fields.
export const SCTLR_M = 1 << 0;
export const SCTLR_TRE = 1 << 1;
export const SCTLR_AFE = 1 << 2;

// ACTLR fields.
export const ACTLR_CFERE = 1 << 0;
export const ACTLR_CFEIE = 1 << 1;
export const ACTLR_TLBMCFG_SHIFT = 12;
export const ACTLR_TLBMCFG_WALK = 3;
export const ACTLR_CFCFG = 1 << 14;
export const ACTLR_V2PCFG_SHIFT = 16;

// FSR bits.
export const FSR_TF = 0x2;
export const FSR_AFF = 0x4;
export const FSR_APF = 0x8;
export const FSR_TLBMF = 0x10;
export const FSR_HTWDEEF = 0x20;
export const FSR_HTWSEEF = 0x40;
export const FSR_MHF = 0x80;
export const FSR_SL = 0x10000;
export const FSR_SS = 0x40000000;
export const FSR_MULTI = 0x80000000;
/** The bits that make "a fault is pending": MULTI and SS alone do not. */
export const FSR_FAULT_BITS = FSR_TF | FSR_AFF | FSR_APF | FSR_TLBMF | FSR_HTWDEEF | FSR_HTWSEEF | FSR_MHF;
export const FSR_WRITABLE = FSR_FAULT_BITS | FSR_SL | FSR_SS | FSR_MULTI;

export const FSR_BIT_NAMES: ReadonlyArray<[number, string]> = [
  [FSR_TF, 'TF'],
  [FSR_AFF, 'AFF'],
  [FSR_APF, 'APF'],
  [FSR_TLBMF, 'TLBMF'],
  [FSR_HTWDEEF, 'HTWDEEF'],
  [FSR_HTWSEEF, 'HTWSEEF'],
  [FSR_MHF, 'MHF'],
  [FSR_SL, 'SL'],
  [FSR_SS, 'SS'],
  [FSR_MULTI, 'MULTI'],
];

const fsrNamesCache = new Map<number, readonly string[]>();

/** FSR bit names, computed once per distinct value (fault storms repeat a handful of values). */
export function fsrBitNames(fsr: number): string[] {
  let names = fsrNamesCache.get(fsr);
  if (!names) {
    names = Object.freeze(FSR_BIT_NAMES.filter(([bit]) => (fsr & bit) !== 0).map(([, n]) => n));
    if (fsrNamesCache.size < 4096) fsrNamesCache.set(fsr, names);
  }
  return names as string[];
}

// FSYNR1 fields.
export const FSYNR1_APRIV = 1 << 5;
export const FSYNR1_AINST = 1 << 7;
export const FSYNR1_AWRITE = 1 << 8;

// PAR fields.
export const PAR_FAULT = 1 << 0;
export const PAR_SS = 1 << 1;

// TTBR0 fields.
export const TTBR0_SH = 1 << 1;

/**
 * Values io-pgtable-v7s computes and the driver programs on attach. msm_iommu leaves coherent_walk false, so TTBR0
 * carries S only (inner and outer non-cacheable walk), not the 0x6a of a coherent walker.
 */
export const TTBR0_WALK_ATTRS = TTBR0_SH;
export const PRRR_ATTACH = 0x800b8204;
export const NMRR_ATTACH = 0x40004000;
export const SCTLR_ATTACH = SCTLR_M | SCTLR_TRE | SCTLR_AFE;

/** The version this model reports in REV: major 1 (REV 7:4), minor 0 (REV 3:0), the 8x60 SMMU generation. */
export const REV_VALUE = (1 << 4) | 0;

// IDR fields (NM2VCBMT 8:0, HTW b9: hardware table walk, TLBSIZE 15:12, NCB 23:16).
export const IDR_HTW = 1 << 9;

export type FaultKind = 'translation' | 'permission' | 'access-flag' | 'external' | 'multi-hit' | 'tlb-miss';

export const FAULT_KIND_BIT: Record<FaultKind, number> = {
  translation: FSR_TF,
  permission: FSR_APF,
  'access-flag': FSR_AFF,
  external: FSR_HTWSEEF,
  'multi-hit': FSR_MHF,
  'tlb-miss': FSR_TLBMF,
};
