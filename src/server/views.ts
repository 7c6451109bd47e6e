/** Shapes core objects into API JSON: addresses and registers as lower-case hex, sizes as integers. */
import { hex } from '../errors.js';
import type { HwAccessResult, HwContext, IommuInstance } from '../hw/family.js';
import type { Profile } from '../hw/profile.js';
import type { Domain } from '../iommu/domain.js';
import { pageCountsObject } from '../iommu/iommu.js';
import { PGSIZES } from '../pgtable/desc.js';
import { ACCESS_NAMES } from '../hw/context.js';

export function profileView(p: Profile) {
  return {
    name: p.name,
    description: p.description,
    smmus: p.smmus.map((s) => ({
      name: s.name,
      family: s.family ?? 'msm',
      base: hex(s.base),
      banks: s.banks,
      ...(s.aperture ? { aperture: { base: hex(s.aperture.base), size: s.aperture.size } } : {}),
      contexts: s.contexts.map((c) => ({ index: c.index, name: c.name, mids: [...c.mids] })),
    })),
    memory: p.memory.map((m) => ({ name: m.name, base: hex(m.base), size: m.size, priority: m.priority })),
    pagetablePool: { base: hex(p.pagetablePool.base), size: p.pagetablePool.size },
  };
}

export function contextView(smmu: IommuInstance, bank: HwContext) {
  const registers: Record<string, string> = {};
  for (const [name, v] of Object.entries(smmu.registers(bank))) registers[name] = hex(v >>> 0);
  const t = smmu.tlbView(bank);
  return {
    smmu: smmu.name,
    family: smmu.family,
    index: bank.index,
    name: bank.name,
    device: bank.name,
    mids: [...bank.mids],
    enabled: smmu.enabled(bank),
    domain: bank.domain,
    ...smmu.faultSettings(bank),
    stalls: bank.stalls.map((s) => ({ stall: s.id, iova: hex(s.iova), access: ACCESS_NAMES[s.access]! })),
    registers,
    tlb: { entries: t.entries, hits: t.hits, misses: t.misses, evictions: t.evictions, invalidations: t.invalidations ?? 0 },
  };
}

export function smmuView(smmu: IommuInstance) {
  const t = smmu.tlbView();
  return {
    name: smmu.name,
    family: smmu.family,
    base: hex(smmu.base),
    banks: Math.max(...smmu.banks.map((b) => b.index)) + 1,
    contexts: smmu.banks.map((b) => contextView(smmu, b)),
    tlb: { entries: t.entries, capacity: t.capacity, ...(t.policy ? { policy: t.policy } : {}), hits: t.hits, misses: t.misses, evictions: t.evictions, invalidations: t.invalidations ?? 0 },
    ...(smmu.details ? { details: smmu.details() } : {}),
  };
}

export function domainView(d: Domain) {
  return {
    id: d.id,
    type: d.type,
    family: d.family,
    label: d.label,
    ttbr0: hex(d.table.root),
    attached: [...d.attached].map((x) => x.name),
    mappedBytes: d.mappedBytes,
    pages: pageCountsObject(d.pageCounts),
    pendingSync: d.pending.map((r) => ({ iova: hex(r.iova), size: r.size })),
    pgsizes: PGSIZES.filter((s) => d.cfg.pgsizeBitmap & s),
    flushPolicy: d.flushPolicy,
    partialUnmap: d.cfg.partialUnmap,
  };
}

export function accessView(r: HwAccessResult) {
  if (r.outcome !== 'ok') return r;
  return {
    outcome: 'ok' as const,
    paddr: hex(r.paddr),
    tlb: r.tlb,
    ...(r.stale ? { stale: true } : {}),
    ...(r.unbacked ? { unbacked: true } : {}),
    ...(r.data ? { data: Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength).toString('base64') } : {}),
    ...(r.segments
      ? { segments: r.segments.map((s) => ({ iova: hex(s.iova), paddr: hex(s.paddr), size: s.size, tlb: s.tlb, ...(s.unbacked ? { unbacked: true } : {}) })) }
      : {}),
  };
}
