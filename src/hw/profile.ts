import { fail } from '../errors.js';
import type { MemoryRegion } from '../memory/phys.js';
import type { Family } from './family.js';

export interface ContextSpec {
  index: number;
  name: string;
  mids: number[];
}

export interface SmmuSpec {
  name: string;
  /** The IOMMU family (default msm): API.md "IOMMU families in one SoC". */
  family?: Family;
  base: number;
  banks: number;
  contexts: ContextSpec[];
  /** GART: the aperture its entries translate (4 KiB aligned). */
  aperture?: { base: number; size: number };
  /** OMAP: attach writes GP_REG = 1, the MMU answers faults with a bus error (the IPU). */
  busErrorBack?: boolean;
}

export interface MemorySpec extends MemoryRegion {
  priority: number;
}

/** A simulated SoC: its SMMUs, RAM and the reserved page-table pool (API.md "Profiles"). */
export interface Profile {
  name: string;
  description: string;
  smmus: SmmuSpec[];
  memory: MemorySpec[];
  pagetablePool: { base: number; size: number };
}

const range = (a: number, b: number): number[] => Array.from({ length: b - a + 1 }, (_, i) => a + i);

/** MSM 8x60, from HARDWARE.md (arch/arm/mach-msm/devices-iommu.c). */
export const MSM8X60: Profile = {
  name: 'msm8x60',
  description: 'Qualcomm MSM 8x60: 12 SMMUs in front of the multimedia cores, 21 named contexts, SMI + EBI1 memory',
  smmus: [
    { name: 'jpegd', base: 0x07300000, banks: 2, contexts: [{ index: 0, name: 'jpegd_src', mids: [0] }, { index: 1, name: 'jpegd_dst', mids: [1] }] },
    { name: 'vpe', base: 0x07400000, banks: 2, contexts: [{ index: 0, name: 'vpe_src', mids: [0] }, { index: 1, name: 'vpe_dst', mids: [1] }] },
    { name: 'mdp0', base: 0x07500000, banks: 2, contexts: [{ index: 0, name: 'mdp_vg1', mids: [0, 2] }, { index: 1, name: 'mdp_rgb1', mids: [1, ...range(3, 10)] }] },
    { name: 'mdp1', base: 0x07600000, banks: 2, contexts: [{ index: 0, name: 'mdp_vg2', mids: [0, 2] }, { index: 1, name: 'mdp_rgb2', mids: [1, ...range(3, 10)] }] },
    { name: 'rot', base: 0x07700000, banks: 2, contexts: [{ index: 0, name: 'rot_src', mids: [0] }, { index: 1, name: 'rot_dst', mids: [1] }] },
    { name: 'ijpeg', base: 0x07800000, banks: 2, contexts: [{ index: 0, name: 'ijpeg_src', mids: [0] }, { index: 1, name: 'ijpeg_dst', mids: [1] }] },
    { name: 'vfe', base: 0x07900000, banks: 2, contexts: [{ index: 0, name: 'vfe_imgwr', mids: range(2, 8) }, { index: 1, name: 'vfe_misc', mids: [0, 1, 9] }] },
    { name: 'vcodec_a', base: 0x07a00000, banks: 2, contexts: [{ index: 0, name: 'vcodec_a_stream', mids: [2, 5] }, { index: 1, name: 'vcodec_a_mm1', mids: [0, 1, ...range(6, 15)] }] },
    { name: 'vcodec_b', base: 0x07b00000, banks: 2, contexts: [{ index: 0, name: 'vcodec_b_mm2', mids: [0, 1, ...range(6, 15)] }] },
    { name: 'gfx3d', base: 0x07c00000, banks: 3, contexts: [{ index: 0, name: 'gfx3d_user', mids: range(0, 15) }, { index: 1, name: 'gfx3d_priv', mids: range(16, 31) }] },
    { name: 'gfx2d0', base: 0x07d00000, banks: 2, contexts: [{ index: 0, name: 'gfx2d0_2d0', mids: range(0, 7) }] },
    { name: 'gfx2d1', base: 0x07e00000, banks: 2, contexts: [{ index: 0, name: 'gfx2d1_2d1', mids: range(0, 7) }] },
  ],
  memory: [
    { name: 'smi', base: 0x38000000, size: 0x04000000, priority: 1 },
    { name: 'ebi1', base: 0x40000000, size: 0x20000000, priority: 0 },
  ],
  pagetablePool: { base: 0x5f000000, size: 0x01000000 },
};

export const TINY: Profile = {
  name: 'tiny',
  description: 'One SMMU with two contexts and 64 MiB of RAM: small enough to read every register by eye',
  smmus: [{ name: 'smmu0', base: 0x01000000, banks: 2, contexts: [{ index: 0, name: 'dev0', mids: [0] }, { index: 1, name: 'dev1', mids: [1] }] }],
  memory: [{ name: 'ram', base: 0x80000000, size: 0x04000000, priority: 0 }],
  pagetablePool: { base: 0x83e00000, size: 0x00200000 },
};

/** OMAP4 (HARDWARE.md): the IPU's and the DSP's MMUs, one client each. */
export const OMAP4: Profile = {
  name: 'omap4',
  description: 'TI OMAP4: the OMAP IOMMUs of the IPU (Cortex-M3 Ducati) and the DSP (Tesla), 32-entry TLBs, 1 GiB of RAM',
  smmus: [
    { name: 'mmu_ipu', family: 'omap', base: 0x55082000, banks: 1, busErrorBack: true, contexts: [{ index: 0, name: 'ipu', mids: [0] }] },
    { name: 'mmu_dsp', family: 'omap', base: 0x4a066000, banks: 1, contexts: [{ index: 0, name: 'dsp', mids: [0] }] },
  ],
  memory: [{ name: 'ram', base: 0x80000000, size: 0x40000000, priority: 0 }],
  pagetablePool: { base: 0xbf000000, size: 0x01000000 },
};

/** Tegra 20 (HARDWARE.md): the GART inside the memory controller, its clients as devices. */
export const TEGRA20: Profile = {
  name: 'tegra20',
  description: 'NVIDIA Tegra 20: the GART (8192 entries behind a 32 MiB aperture, no isolation) in the memory controller',
  smmus: [
    {
      name: 'gart',
      family: 'gart',
      base: 0x7000f000,
      banks: 1,
      aperture: { base: 0x58000000, size: 0x02000000 },
      contexts: [
        { index: 0, name: 'host1x', mids: [0x12, 0x2b] },
        { index: 0, name: 'gr2d', mids: [0x11, 0x28] },
        { index: 0, name: 'gr3d', mids: [0x10, 0x2a] },
        { index: 0, name: 'display', mids: [0x00, 0x00] },
      ],
    },
  ],
  memory: [{ name: 'ram', base: 0x00000000, size: 0x20000000, priority: 0 }],
  pagetablePool: { base: 0x1f000000, size: 0x01000000 },
};

export const PROFILES: Record<string, Profile> = { msm8x60: MSM8X60, tiny: TINY, omap4: OMAP4, tegra20: TEGRA20 };

/**
 * Semantic checks of a profile (shape is zod's job at the edge): unique names, banks and MIDs in range, one MID
 * to one bank per SMMU, non-overlapping memory, the page-table pool inside RAM and aligned for an L1 table.
 */
export function validateProfile(p: Profile): Profile {
  const devices = new Set<string>();
  const smmuNames = new Set<string>();
  if (p.smmus.length === 0) fail('profileNoSmmu');
  for (const s of p.smmus) {
    if (smmuNames.has(s.name)) fail('profileSmmuTwice', { smmu: s.name });
    smmuNames.add(s.name);
    const family = s.family ?? 'msm';
    for (const c of s.contexts) {
      if (/^[0-9]/.test(c.name)) fail('profileContextDigit', { context: c.name });
      if (devices.has(c.name)) fail('profileContextTwice', { context: c.name });
      devices.add(c.name);
    }
    if (family !== 'gart' && s.aperture !== undefined) fail('profileApertureNotGart', { smmu: s.name });
    if (family !== 'omap' && s.busErrorBack !== undefined) fail('profileBusErrorNotOmap', { smmu: s.name });
    if (family === 'msm') validateMsm(s);
    else validateSingleBank(s, family);
  }
  if (p.memory.length === 0) fail('profileNoRam');
  const mem = [...p.memory].sort((a, b) => a.base - b.base);
  for (let i = 0; i < mem.length; i++) {
    const r = mem[i]!;
    if (r.size <= 0 || r.base % 4096 !== 0 || r.size % 4096 !== 0 || r.base + r.size > 2 ** 32) {
      fail('profileRegion', { region: r.name });
    }
    if (i > 0 && mem[i - 1]!.base + mem[i - 1]!.size > r.base) fail('profileRegionsOverlap', { a: mem[i - 1]!.name, b: r.name });
  }
  const pool = p.pagetablePool;
  if (pool.base % 0x4000 !== 0 || pool.size < 0x4000 || !mem.some((r) => pool.base >= r.base && pool.base + pool.size <= r.base + r.size)) {
    fail('profilePagetablePool');
  }
  return p;
}

function validateMsm(s: SmmuSpec): void {
  if (s.banks === undefined) fail('profileBanksRequired', { smmu: s.name });
  if (s.base % 0x100000 !== 0 || s.base + 0x100000 > 2 ** 32) fail('profileMsmBase', { smmu: s.name });
  if (s.banks < 1 || s.banks > 64) fail('profileMsmBanks', { smmu: s.name });
  const banksUsed = new Set<number>();
  const mids = new Map<number, number>();
  for (const c of s.contexts) {
    if (c.index < 0 || c.index >= s.banks) fail('profileBankRange', { context: c.name, index: c.index });
    if (banksUsed.has(c.index)) fail('profileBankTwice', { smmu: s.name, bank: c.index });
    banksUsed.add(c.index);
    for (const m of c.mids) {
      if (m < 0 || m > 255) fail('profileMsmMid', { context: c.name, mid: m });
      if (mids.has(m)) fail('profileMidTwice', { smmu: s.name, mid: m });
      mids.set(m, c.index);
    }
  }
}

/** omap and gart: one bank (banks optional, 1 if given), windows aligned to their size. */
function validateSingleBank(s: SmmuSpec, family: Family): void {
  const window = family === 'omap' ? 0x100 : 0x400;
  if ((s.banks as number | undefined) === undefined) s.banks = 1;
  if (s.banks !== 1) fail('profileOneBank', { smmu: s.name, family });
  if (s.base % window !== 0 || s.base + window > 2 ** 32) fail('profileWindowBase', { smmu: s.name, window });
  for (const c of s.contexts) {
    if (c.index !== 0) fail('profileContextIndex0', { context: c.name, family });
    for (const m of c.mids) if (m < 0 || m > (family === 'gart' ? 0x3f : 255)) fail('profileMid', { context: c.name, mid: m });
  }
  if (family === 'omap') {
    if (s.contexts.length !== 1) fail('profileOmapContexts', { smmu: s.name });
    return;
  }
  for (const c of s.contexts) if (c.mids.length !== 2) fail('profileGartMids', { context: c.name });
  const a = s.aperture;
  if (!a) fail('profileGartNoAperture', { smmu: s.name });
  if (a.base % 0x1000 !== 0 || a.size % 0x1000 !== 0 || a.size <= 0 || a.base + a.size > 2 ** 32 || a.size > 0x40000000) {
    fail('profileGartAperture', { smmu: s.name });
  }
}
