/** Shapes core objects into API JSON: addresses and registers as lower-case hex, sizes as integers. */
import { hex } from '../errors.js';
import type { ContextBank } from '../hw/context.js';
import type { Profile } from '../hw/profile.js';
import { CONTEXT_REGISTERS, SCTLR_M } from '../hw/regs.js';
import type { AccessResult, Smmu } from '../hw/smmu.js';
import type { Domain } from '../iommu/domain.js';
import { pageCountsObject } from '../iommu/iommu.js';
import { PGSIZES } from '../pgtable/desc.js';
import { ACCESS_NAMES } from '../hw/context.js';

export function profileView(p: Profile) {
  return {
    name: p.name,
    description: p.description,
    smmus: p.smmus.map((s) => ({ name: s.name, base: hex(s.base), banks: s.banks, contexts: s.contexts.map((c) => ({ index: c.index, name: c.name, mids: [...c.mids] })) })),
    memory: p.memory.map((m) => ({ name: m.name, base: hex(m.base), size: m.size, priority: m.priority })),
    pagetablePool: { base: hex(p.pagetablePool.base), size: p.pagetablePool.size },
  };
}

export function contextView(smmu: Smmu, bank: ContextBank) {
  const registers: Record<string, string> = {};
  for (const name of Object.keys(CONTEXT_REGISTERS)) registers[name] = hex((bank as unknown as Record<string, number>)[name]! >>> 0);
  return {
    smmu: smmu.name,
    index: bank.index,
    name: bank.name,
    device: bank.name,
    mids: [...bank.mids],
    enabled: (bank.SCTLR & SCTLR_M) !== 0,
    domain: bank.domain,
    // In force now (ACTLR.CFCFG / CFEIE, whoever wrote them); `settings` is what the API's attach programs.
    faultMode: bank.effectiveFaultMode,
    faultInterrupt: bank.effectiveFaultInterrupt,
    settings: { faultMode: bank.faultMode, faultInterrupt: bank.faultInterrupt },
    stalls: bank.stalls.map((s) => ({ stall: s.id, iova: hex(s.iova), access: ACCESS_NAMES[s.access]! })),
    registers,
    tlb: { entries: smmu.tlb.entries(bank.index).length, ...smmu.tlbStats(bank) },
  };
}

export function smmuView(smmu: Smmu) {
  return {
    name: smmu.name,
    base: hex(smmu.base),
    banks: smmu.banks.length,
    contexts: smmu.banks.map((b) => contextView(smmu, b)),
    tlb: { entries: smmu.tlb.size, capacity: smmu.tlb.capacity, policy: smmu.tlb.policy, ...smmu.tlbStats() },
  };
}

export function domainView(d: Domain) {
  return {
    id: d.id,
    type: d.type,
    label: d.label,
    ttbr0: hex(d.table.l1),
    attached: [...d.attached].map((x) => x.name),
    mappedBytes: d.mappedBytes,
    pages: pageCountsObject(d.pages),
    pendingSync: d.pending.map((r) => ({ iova: hex(r.iova), size: r.size })),
    pgsizes: PGSIZES.filter((s) => d.cfg.pgsizeBitmap & s),
    flushPolicy: d.flushPolicy,
    partialUnmap: d.cfg.partialUnmap,
  };
}

export function accessView(r: AccessResult) {
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
