/**
 * The IOMMU families a SoC may hold, as data: how to build an instance, which table format its domains use and
 * the IOMMU-API rules that differ. The IOMMU layer looks rules up here by a device's family and never branches
 * on family names.
 */
import { fail } from '../errors.js';
import type { PhysMemory } from '../memory/phys.js';
import type { PageTablePool } from '../memory/ptpool.js';
import { PGSIZES, SZ_4K } from '../pgtable/desc.js';
import type { PgTable } from '../pgtable/format.js';
import { GartTable } from '../pgtable/gart.js';
import { OmapTable } from '../pgtable/omap.js';
import { V7sTable } from '../pgtable/v7s.js';
import type { Family, FamilyEnv, IommuInstance } from './family.js';
import { Gart } from './gart/gart.js';
import { MsmSmmu } from './msm/index.js';
import { OmapMmu } from './omap/mmu.js';
import type { SmmuSpec } from './profile.js';
import type { HwEnv } from './smmu.js';
import type { TlbPolicy } from './tlb.js';

export interface InstanceOptions {
  tlbEntries: number;
  tlbPolicy: TlbPolicy;
  hwEnv: HwEnv;
  env: FamilyEnv;
}

/** What a domain's table is built from, and restored from (tables in RAM are found at their root). */
export interface TableSource {
  mem: PhysMemory;
  pool: PageTablePool;
}

export interface FamilyDef {
  family: Family;
  /** The page sizes domains of this family may use, and their default. */
  pgsizes: readonly number[];
  /** Devices one domain may hold at once (the OMAP: one). */
  maxDevicesPerDomain: number;
  /** All devices of one instance share one default DMA domain (the GART: one aperture, no isolation). */
  sharedDmaDomain: boolean;
  /** Whether a mapping's prot reaches the hardware (false: the format has no permission bits). */
  permissions: boolean;
  createInstance(spec: SmmuSpec, o: InstanceOptions): IommuInstance;
  /** A new table for a domain of this family, for `inst` (the GART's entries depend on its aperture). */
  createTable(src: TableSource, inst: IommuInstance): PgTable;
  /** The table of a restored domain: `root` as snapshot() saved it, `extra` what tableState gave. */
  restoreTable(src: TableSource, inst: IommuInstance, root: number, extra: unknown): PgTable;
  /** What a snapshot must keep beyond the root (the GART's entries are not in RAM). */
  tableState(t: PgTable): unknown;
}

export const FAMILIES: Readonly<Record<Family, FamilyDef>> = {
  msm: {
    family: 'msm',
    pgsizes: PGSIZES,
    maxDevicesPerDomain: Infinity,
    sharedDmaDomain: false,
    permissions: true,
    createInstance: (spec, o) => new MsmSmmu(spec, o.tlbEntries, o.tlbPolicy, o.hwEnv),
    createTable: (src) => new V7sTable(src.mem, src.pool),
    restoreTable: (src, _inst, root) => new V7sTable(src.mem, src.pool, root),
    tableState: () => undefined,
  },
  omap: {
    family: 'omap',
    pgsizes: PGSIZES,
    maxDevicesPerDomain: 1,
    sharedDmaDomain: false,
    permissions: false,
    createInstance: (spec, o) => new OmapMmu(spec, o.env),
    createTable: (src) => new OmapTable(src.mem, src.pool),
    restoreTable: (src, _inst, root) => new OmapTable(src.mem, src.pool, root),
    tableState: () => undefined,
  },
  gart: {
    family: 'gart',
    pgsizes: [SZ_4K],
    maxDevicesPerDomain: Infinity,
    sharedDmaDomain: true,
    permissions: false,
    createInstance: (spec, o) => new Gart(spec, o.env),
    createTable: (_src, inst) => asGart(inst).newTable(),
    restoreTable: (src, inst, _root, extra) => {
      const t = asGart(inst).newTable();
      const b = Buffer.from(extra as string, 'base64');
      new Uint8Array(t.entries.buffer, t.entries.byteOffset, t.entries.byteLength).set(b);
      void src;
      return t;
    },
    tableState: (t) => {
      const e = (t as GartTable).entries;
      return Buffer.from(e.buffer, e.byteOffset, e.byteLength).toString('base64');
    },
  },
};

function asGart(inst: IommuInstance): Gart {
  if (!(inst instanceof Gart)) fail('notGart', { smmu: inst.name });
  return inst;
}

export function familyDef(f: Family): FamilyDef {
  return FAMILIES[f];
}
