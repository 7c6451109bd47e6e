import { IommuError } from '../errors.js';
import type { MemoryRegion } from '../memory/phys.js';

export interface ContextSpec {
  index: number;
  name: string;
  mids: number[];
}

export interface SmmuSpec {
  name: string;
  base: number;
  banks: number;
  contexts: ContextSpec[];
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

export const PROFILES: Record<string, Profile> = { msm8x60: MSM8X60, tiny: TINY };

function bad(message: string, details?: Record<string, unknown>): never {
  throw new IommuError('BAD_REQUEST', message, details);
}

/**
 * Semantic checks of a profile (shape is zod's job at the edge): unique names, banks and MIDs in range, one MID
 * to one bank per SMMU, non-overlapping memory, the page-table pool inside RAM and aligned for an L1 table.
 */
export function validateProfile(p: Profile): Profile {
  const devices = new Set<string>();
  const smmuNames = new Set<string>();
  if (p.smmus.length === 0) bad('a profile needs at least one SMMU');
  for (const s of p.smmus) {
    if (smmuNames.has(s.name)) bad(`duplicate SMMU name ${s.name}`, { smmu: s.name });
    smmuNames.add(s.name);
    if (s.base % 0x100000 !== 0 || s.base + 0x100000 > 2 ** 32) bad(`SMMU ${s.name}: base must be 1 MiB aligned in 32-bit space`);
    if (s.banks < 1 || s.banks > 64) bad(`SMMU ${s.name}: banks must be 1..64`);
    const banksUsed = new Set<number>();
    const mids = new Map<number, number>();
    for (const c of s.contexts) {
      if (/^[0-9]/.test(c.name)) bad(`context name ${c.name} must not start with a digit`, { context: c.name });
      if (devices.has(c.name)) bad(`duplicate context name ${c.name}`, { context: c.name });
      devices.add(c.name);
      if (c.index < 0 || c.index >= s.banks) bad(`context ${c.name}: bank index ${c.index} out of range`, { context: c.name });
      if (banksUsed.has(c.index)) bad(`SMMU ${s.name}: bank ${c.index} named twice`);
      banksUsed.add(c.index);
      for (const m of c.mids) {
        if (m < 0 || m > 255) bad(`context ${c.name}: MID ${m} out of range 0..255`);
        if (mids.has(m)) bad(`SMMU ${s.name}: MID ${m} routes to more than one bank`, { mid: m });
        mids.set(m, c.index);
      }
    }
  }
  if (p.memory.length === 0) bad('a profile needs RAM');
  const mem = [...p.memory].sort((a, b) => a.base - b.base);
  for (let i = 0; i < mem.length; i++) {
    const r = mem[i]!;
    if (r.size <= 0 || r.base % 4096 !== 0 || r.size % 4096 !== 0 || r.base + r.size > 2 ** 32) {
      bad(`memory region ${r.name} must be 4 KiB aligned, non-empty and inside 32-bit space`);
    }
    if (i > 0 && mem[i - 1]!.base + mem[i - 1]!.size > r.base) bad(`memory regions ${mem[i - 1]!.name} and ${r.name} overlap`);
  }
  const pool = p.pagetablePool;
  if (pool.base % 0x4000 !== 0 || pool.size < 0x4000 || !mem.some((r) => pool.base >= r.base && pool.base + pool.size <= r.base + r.size)) {
    bad('pagetablePool must be 16 KiB aligned, at least 16 KiB, and inside one memory region');
  }
  return p;
}
