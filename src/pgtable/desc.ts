/**
 * ARMv7 short-descriptor format (io-pgtable-arm-v7s): descriptor encode/decode, bit-exact as HARDWARE.md says.
 * No memory, no hardware: pure functions over 32-bit descriptor values.
 */

/** The kernel's IOMMU_* prot flags. */
export const IOMMU_READ = 1 << 0;
export const IOMMU_WRITE = 1 << 1;
export const IOMMU_CACHE = 1 << 2;
export const IOMMU_NOEXEC = 1 << 3;
export const IOMMU_MMIO = 1 << 4;
export const IOMMU_PRIV = 1 << 5;

export const PROT_NAMES = ['read', 'write', 'cache', 'noexec', 'mmio', 'priv'] as const;
export type ProtName = (typeof PROT_NAMES)[number];

export function protFromNames(names: readonly string[]): number {
  let p = 0;
  for (const n of names) {
    const i = PROT_NAMES.indexOf(n as ProtName);
    if (i >= 0) p |= 1 << i;
  }
  return p;
}

/** Flag names for each of the 64 prot values, computed once (events and views name prot on every map). */
const PROT_NAME_LISTS: ReadonlyArray<readonly ProtName[]> = Array.from({ length: 64 }, (_, prot) =>
  Object.freeze(PROT_NAMES.filter((_, i) => prot & (1 << i))),
);

export function protToNames(prot: number): ProtName[] {
  return (PROT_NAME_LISTS[prot & 63] ?? PROT_NAMES.filter((_, i) => prot & (1 << i))) as ProtName[];
}

export const SZ_4K = 0x1000;
export const SZ_64K = 0x10000;
export const SZ_1M = 0x100000;
export const SZ_16M = 0x1000000;
export const PGSIZES = [SZ_4K, SZ_64K, SZ_1M, SZ_16M] as const;
export const PGSIZE_NAMES = ['4K', '64K', '1M', '16M'] as const;
/** Index of a page size in PGSIZES, by log2: 12 → 0, 16 → 1, 20 → 2, 24 → 3. */
export function pgsizeIndex(size: number): number {
  return size === SZ_4K ? 0 : size === SZ_64K ? 1 : size === SZ_1M ? 2 : 3;
}

// Descriptor types.
export const L1_TYPE_TABLE = 0x1;
/** Bit 1 set: section or supersection (bit 0 is PXN where implemented). */
export const L1_SECTION_BIT = 0x2;
export const L1_SUPERSECTION = 1 << 18;
export const L2_TYPE_LARGE = 0x1;
export const L2_SMALL_BIT = 0x2;

// Attribute bits in their section (L1) positions; L2 positions are the same fields shifted by 6.
const S_B = 1 << 2;
const S_C = 1 << 3;
const S_XN = 1 << 4;
const S_AP0 = 1 << 10;
const S_AP1 = 1 << 11;
const S_TEX0 = 1 << 12;
const S_AP2 = 1 << 15;
const S_S = 1 << 16;
const S_NG = 1 << 17;

/** Attribute bits for a section/supersection, from prot, exactly as io-pgtable-v7s computes them. */
export function sectionAttrs(prot: number): number {
  let d = S_NG | S_S | S_AP0;
  if (!(prot & IOMMU_PRIV)) d |= S_AP1;
  if (!(prot & IOMMU_WRITE)) d |= S_AP2;
  if (prot & IOMMU_NOEXEC) d |= S_XN;
  if (prot & IOMMU_MMIO) d |= S_B;
  else {
    d |= S_TEX0;
    if (prot & IOMMU_CACHE) d |= S_B | S_C;
  }
  return d >>> 0;
}

/** Attribute bits for an L2 small page (XN at bit 0). */
export function smallAttrs(prot: number): number {
  return sectionToSmallAttrs(sectionAttrs(prot));
}

/** Section attribute bits moved to small-page positions: AP 11:10 → 5:4, TEX 14:12 → 8:6, AP2/S/nG 17:15 → 11:9. */
export function sectionToSmallAttrs(s: number): number {
  return (((s >>> 6) & 0xff0) | (s & (S_B | S_C)) | (s & S_XN ? 1 : 0)) >>> 0;
}

/** Section attribute bits moved to large-page positions (TEX stays at 14:12, XN goes to bit 15). */
export function sectionToLargeAttrs(s: number): number {
  return (((s >>> 6) & 0xe30) | (s & (S_B | S_C | (7 << 12))) | (s & S_XN ? 1 << 15 : 0)) >>> 0;
}

/** Large-page attribute bits as a small page's (the 64K → 16 × 4K split). */
export function largeToSmallAttrs(l: number): number {
  return ((l & 0xe3c) | ((l >>> 6) & 0x1c0) | (l & (1 << 15) ? 1 : 0)) >>> 0;
}

/** Attribute bits a section keeps from a supersection (everything but the base and the supersection bit). */
export const SECTION_ATTR_MASK = 0x000bfc1f;

/** Attribute bits for an L2 large page (TEX at 14:12, XN at bit 15). */
export function largeAttrs(prot: number): number {
  return sectionToLargeAttrs(sectionAttrs(prot));
}

export function encodeSection(paddr: number, prot: number): number {
  return ((paddr & 0xfff00000) | sectionAttrs(prot) | L1_SECTION_BIT) >>> 0;
}

export function encodeSupersection(paddr: number, prot: number): number {
  return ((paddr & 0xff000000) | sectionAttrs(prot) | L1_SUPERSECTION | L1_SECTION_BIT) >>> 0;
}

export function encodeTable(l2Base: number): number {
  return ((l2Base & 0xfffffc00) | L1_TYPE_TABLE) >>> 0;
}

export function encodeSmall(paddr: number, prot: number): number {
  return ((paddr & 0xfffff000) | smallAttrs(prot) | L2_SMALL_BIT) >>> 0;
}

export function encodeLarge(paddr: number, prot: number): number {
  return ((paddr & 0xffff0000) | largeAttrs(prot) | L2_TYPE_LARGE) >>> 0;
}

/**
 * Permission bits of a leaf in one common layout, whatever the level: the hardware check and the TLB use this.
 * b0 AP0 (access flag), b1 AP1 (unprivileged), b2 AP2 (read-only), b3 XN, b4 C, b5 B, b6 TEX0.
 */
export const PERM_AP0 = 1;
export const PERM_AP1 = 2;
export const PERM_AP2 = 4;
export const PERM_XN = 8;
export const PERM_C = 16;
export const PERM_B = 32;
export const PERM_TEX0 = 64;

export function sectionPerm(d: number): number {
  return (
    ((d >>> 10) & 3) | ((d >>> 13) & 4) | (d & S_XN ? PERM_XN : 0) | (d & S_C ? PERM_C : 0) | (d & S_B ? PERM_B : 0) |
    (d & S_TEX0 ? PERM_TEX0 : 0)
  );
}

export function smallPerm(d: number): number {
  return (
    ((d >>> 4) & 3) | ((d >>> 7) & 4) | (d & 1 ? PERM_XN : 0) | (d & S_C ? PERM_C : 0) | (d & S_B ? PERM_B : 0) |
    (d & (1 << 6) ? PERM_TEX0 : 0)
  );
}

export function largePerm(d: number): number {
  return (
    ((d >>> 4) & 3) | ((d >>> 7) & 4) | (d & (1 << 15) ? PERM_XN : 0) | (d & S_C ? PERM_C : 0) | (d & S_B ? PERM_B : 0) |
    (d & S_TEX0 ? PERM_TEX0 : 0)
  );
}

/** Reverse of sectionAttrs, on the common perm layout: READ always, WRITE if AP2 clear, and so on. */
export function permToProt(perm: number): number {
  let p = IOMMU_READ;
  if (!(perm & PERM_AP2)) p |= IOMMU_WRITE;
  if (!(perm & PERM_AP1)) p |= IOMMU_PRIV;
  if (perm & PERM_XN) p |= IOMMU_NOEXEC;
  if (!(perm & PERM_TEX0)) p |= IOMMU_MMIO;
  else if (perm & PERM_C) p |= IOMMU_CACHE;
  return p;
}

/** Rewrites a leaf's attributes for another level (used by the split), keeping prot exactly. */
export function encodeLeaf(size: number, paddr: number, prot: number): number {
  switch (size) {
    case SZ_4K:
      return encodeSmall(paddr, prot);
    case SZ_64K:
      return encodeLarge(paddr, prot);
    case SZ_1M:
      return encodeSection(paddr, prot);
    default:
      return encodeSupersection(paddr, prot);
  }
}
