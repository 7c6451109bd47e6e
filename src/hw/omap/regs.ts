/** OMAP IOMMU register layout (omap-iommu.h), offsets inside the MMU's 0x100-byte window, as HARDWARE.md lists. */
export const MMU_REVISION = 0x00;
export const MMU_IRQSTATUS = 0x18;
export const MMU_IRQENABLE = 0x1c;
export const MMU_WALKING_ST = 0x40;
export const MMU_CNTL = 0x44;
export const MMU_FAULT_AD = 0x48;
export const MMU_TTB = 0x4c;
export const MMU_LOCK = 0x50;
export const MMU_LD_TLB = 0x54;
export const MMU_CAM = 0x58;
export const MMU_RAM = 0x5c;
export const MMU_GFLUSH = 0x60;
export const MMU_FLUSH_ENTRY = 0x64;
export const MMU_READ_CAM = 0x68;
export const MMU_READ_RAM = 0x6c;
export const MMU_EMU_FAULT_AD = 0x70;
export const MMU_GP_REG = 0x88;
export const OMAP_WINDOW = 0x100;

/** REVISION as iommud reports it (version 2.1). */
export const REVISION_VALUE = 0x21;

export const MMU_CNTL_MMU_EN = 1 << 1;
export const MMU_CNTL_TWL_EN = 1 << 2;

export const MMU_IRQ_TLBMISS = 1 << 0;
export const MMU_IRQ_TRANSLATIONFAULT = 1 << 1;
export const MMU_IRQ_EMUMISS = 1 << 2;
export const MMU_IRQ_TABLEWALKFAULT = 1 << 3;
export const MMU_IRQ_MULTIHITFAULT = 1 << 4;
export const MMU_IRQ_MASK = 0x1f;
/** What attach writes to IRQENABLE: every fault but the TLB miss (the walker handles misses). */
export const MMU_IRQ_TWL_MASK = MMU_IRQ_TRANSLATIONFAULT | MMU_IRQ_TABLEWALKFAULT | MMU_IRQ_EMUMISS | MMU_IRQ_MULTIHITFAULT;

export const IRQ_BIT_NAMES: ReadonlyArray<[number, string]> = [
  [MMU_IRQ_TLBMISS, 'TLBMISS'],
  [MMU_IRQ_TRANSLATIONFAULT, 'TRANSLATIONFAULT'],
  [MMU_IRQ_EMUMISS, 'EMUMISS'],
  [MMU_IRQ_TABLEWALKFAULT, 'TABLEWALKFAULT'],
  [MMU_IRQ_MULTIHITFAULT, 'MULTIHITFAULT'],
];

export const MMU_LOCK_BASE_SHIFT = 10;
export const MMU_LOCK_VICT_SHIFT = 4;
export const MMU_LOCK_MASK = (0x1f << MMU_LOCK_BASE_SHIFT) | (0x1f << MMU_LOCK_VICT_SHIFT);

export const MMU_CAM_VATAG_MASK = 0xfffff000;
export const MMU_CAM_P = 1 << 3;
export const MMU_CAM_V = 1 << 2;
/** CAM size codes (bits 1:0) and the bytes each covers. */
export const CAM_PGSZ_BYTES = [0x100000, 0x10000, 0x1000, 0x1000000] as const;
export function camSizeCode(bytes: number): number {
  return CAM_PGSZ_BYTES.indexOf(bytes as (typeof CAM_PGSZ_BYTES)[number]);
}

export const OMAP_TLB_ENTRIES = 32;
