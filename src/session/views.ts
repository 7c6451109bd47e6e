/**
 * What a session answers about itself, as the API's JSON: addresses and registers as lower-case hex, sizes as
 * integers, typed by the response schemas of src/api/schemas.ts. The server shapes nothing from the layers below:
 * it asks a session's `view` for these (reads), or applies a command through `view.apply` (a command's result
 * shaped the same way), so no route imports hw, pgtable, iommu, dma or memory.
 */
import type { z } from 'zod';
import type * as S from '../api/schemas.js';
import { fail, hex } from '../errors.js';
import type { DeviceDmaState, DmaMapping } from '../dma/dma.js';
import { ACCESS_NAMES } from '../hw/context.js';
import type { HwAccessResult, HwContext, IommuInstance } from '../hw/family.js';
import { PROFILES, validateProfile, type Profile } from '../hw/profile.js';
import type { Domain, IovaRange } from '../iommu/domain.js';
import { pageCountsObject, type BatchResult } from '../iommu/iommu.js';
import type { PhysBuffer } from '../memory/pools.js';
import { PGSIZES, protToNames } from '../pgtable/desc.js';
import type { PageCounts } from '../pgtable/v7s.js';
import { checkRam, type Command, type CommandOf } from './commands.js';
import type { Actor, Session } from './session.js';

/** The JSON a response schema describes (what the server's serializer takes). */
type Json<T extends z.ZodType> = z.input<T>;

export type ProfileView = Json<typeof S.ProfilesResponse>[number];
export type ContextView = Json<typeof S.ContextResponse>;
export type SmmuView = Json<typeof S.SmmusResponse>[number];
export type DomainView = Json<typeof S.DomainResponse>;
export type MapView = Json<typeof S.MapResponse>;
export type BatchView = Json<typeof S.BatchResponse>['results'];
export type MappingView = Json<typeof S.MappingsResponse>[number];
export type PagetableView = Json<typeof S.PagetableResponse>;
export type AccessView = Json<typeof S.AccessResponse>;
export type RegisterView = Json<typeof S.MmioResponse>;
export type DmaStateView = Json<typeof S.DmaStateResponse>;
export type BufferView = Json<typeof S.BufferResponse>;

/** One page of a long list, and the cursor the next page starts from (none: this is the last). */
export interface Page<T> {
  items: T[];
  next?: number;
}

// ---- shaping one object --------------------------------------------------------------------------------------

export function profileView(p: Profile): ProfileView {
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

export function contextView(smmu: IommuInstance, bank: HwContext): ContextView {
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

export function smmuView(smmu: IommuInstance): SmmuView {
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

export function domainView(d: Domain): DomainView {
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

export function accessView(r: HwAccessResult): AccessView {
  if (r.outcome !== 'ok') return r;
  // Optional fields set only when present (no object spread per field: this is every access's reply).
  const v: Extract<AccessView, { outcome: 'ok' }> = { outcome: 'ok', paddr: hex(r.paddr), tlb: r.tlb };
  if (r.stale) v.stale = true;
  if (r.unbacked) v.unbacked = true;
  if (r.data) v.data = Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength).toString('base64');
  if (r.segments) v.segments = r.segments.map((s) => ({ iova: hex(s.iova), paddr: hex(s.paddr), size: s.size, tlb: s.tlb, ...(s.unbacked ? { unbacked: true } : {}) }));
  return v;
}

const mapView = (r: { iova: number; size: number; pages: PageCounts }): MapView => ({ iova: hex(r.iova), size: r.size, pages: pageCountsObject(r.pages) });

const rangesView = (rs: readonly IovaRange[]) => rs.map((x) => ({ iova: hex(x.iova), size: x.size }));

type RegAccess = { offset: number; name: string; value: number };
const registerView = (r: RegAccess): RegisterView => ({ offset: hex(r.offset), register: r.name, value: hex(r.value) });

const bounceView = (b: { paddr: number; slots: number } | undefined) => (b ? { paddr: hex(b.paddr), slots: b.slots } : null);

function dmaStateView(st: DeviceDmaState): DmaStateView {
  return {
    device: st.device,
    mode: st.mode,
    domain: st.domain?.id ?? null,
    flushPolicy: st.domain?.flushPolicy ?? st.flushPolicy,
    dmaLimit: hex(st.dmaLimit),
    pendingFlush: st.fq.length,
    mappings: [...st.mappings.values()].map((m) => ({
      dmaAddr: hex(m.dmaAddr),
      size: m.size,
      dir: m.dir,
      ...(m.owner ? { owner: m.owner } : {}),
      bounce: bounceView(m.segments[0]!.bounce),
      segments: m.segments.map((x) => ({ paddr: hex(x.paddr), size: x.size, dmaAddr: hex(x.dmaAddr), bounce: bounceView(x.bounce) })),
    })),
  };
}

const bufferView = (b: PhysBuffer): BufferView => ({ paddr: hex(b.paddr), size: b.size, pool: b.pool });

// ---- a command's result, shaped ------------------------------------------------------------------------------

type BankRef = { smmu: IommuInstance; bank: HwContext };
const bankView = (r: BankRef): ContextView => contextView(r.smmu, r.bank);

/**
 * How each command's result is answered. execute() returns `unknown` (a session is the fold of its commands,
 * whatever they return); the argument types here are what each command does return.
 */
const RESULT_VIEWS = {
  'domain-alloc': domainView,
  attach: domainView,
  detach: domainView,
  map: mapView,
  unmap: (bytes: number) => bytes,
  batch: (rs: BatchResult[]): BatchView => rs.map((r) => (r.op === 'map' ? { op: 'map' as const, ...mapView(r) } : r)),
  flush: (r: { contexts: number; invalidated: number }) => r,
  sync: (r: { invalidated: number; ranges: IovaRange[] }) => ({ invalidated: r.invalidated, ranges: rangesView(r.ranges) }),
  'context-config': bankView,
  'clear-fault': bankView,
  'inject-fault': bankView,
  resume: accessView,
  mmio: (rs: RegAccess[]) => rs.map(registerView),
  access: accessView,
  'master-access': accessView,
  'access-batch': (rs: HwAccessResult[]) => rs.map(accessView),
  'buffer-alloc': bufferView,
  'memory-read': (bytes: Uint8Array) => bytes,
  'cache-maintain': (r: { lines: number }) => r,
  'dma-config': dmaStateView,
  'dma-map': (m: DmaMapping) => ({ dmaAddr: hex(m.dmaAddr), size: m.size }),
  'dma-map-sg': (m: DmaMapping) => ({ dmaAddr: hex(m.dmaAddr), segments: m.segments.map((x) => ({ dmaAddr: hex(x.dmaAddr), size: x.size })) }),
} satisfies { [K in Command['op']]?: (result: never) => unknown };

/** Commands whose result is part of the reply. */
export type AnsweredOp = keyof typeof RESULT_VIEWS;
export type ResultView<K extends AnsweredOp> = ReturnType<(typeof RESULT_VIEWS)[K]>;

// ---- reads of a session --------------------------------------------------------------------------------------

/** Every profile the daemon knows, as GET /v1/profiles answers. */
export function profilesView(): ProfileView[] {
  return Object.values(PROFILES).map(profileView);
}

/** A profile by name (own keys of the table only) or an inline topology, checked. */
export function resolveProfile(p: string | z.output<typeof S.Topology>): Profile {
  if (typeof p !== 'string') return validateProfile(p as Profile);
  if (!Object.hasOwn(PROFILES, p)) fail('unknownProfile', { profile: p, known: Object.keys(PROFILES) });
  return PROFILES[p]!;
}

/** A session's read methods (Session.view): each answers one GET from the state as it is now, changing nothing. */
export class SessionViews {
  constructor(private readonly s: Session) {}

  /**
   * Applies a command for `actor`, waits until it is durable (Session.applyThen), and answers its result as the
   * API does: at once when there is nothing to wait for (no journal), else a promise. The view is taken after the
   * wait, from the objects as they are then.
   */
  apply<K extends AnsweredOp>(actor: Actor | null, cmd: CommandOf<K>): ResultView<K> | Promise<ResultView<K>> {
    return this.s.applyThen(actor, cmd, RESULT_VIEWS[(cmd as Command).op as K] as (r: unknown) => ResultView<K>);
  }

  smmus(): SmmuView[] {
    return this.s.soc.smmus.map(smmuView);
  }

  context(smmu: string, ctx: string): ContextView {
    const soc = this.s.soc;
    const m = soc.smmu(smmu);
    return contextView(m, soc.context(m, ctx));
  }

  /** One register of an IOMMU's MMIO window, read without side effects on state (a read is not a command). */
  register(smmu: string, offset: number): RegisterView {
    const m = this.s.soc.smmu(smmu);
    const name = m.registerName(offset);
    return registerView({ offset, name, value: m.readRegister(offset) });
  }

  domains(): DomainView[] {
    return [...this.s.iommu.domains.values()].map(domainView);
  }

  domain(did: string): DomainView {
    return domainView(this.s.iommu.domain(did));
  }

  /** Up to `limit` extents of [from, to), in iova order. */
  mappings(did: string, from: number, to: number, limit: number): Page<MappingView> {
    const extents = this.s.iommu.mappings(did, from, to, limit + 1);
    const kept = extents.slice(0, limit);
    const last = kept[kept.length - 1];
    return {
      items: kept.map((m) => ({ iova: hex(m.iova), paddr: hex(m.paddr), size: m.size, pageSize: m.pageSize, prot: protToNames(m.prot) })),
      ...(extents.length > limit && last ? { next: last.iova + last.size } : {}),
    };
  }

  iovaToPhys(did: string, iova: number): Json<typeof S.IovaToPhysResponse> {
    if (iova > 0xffffffff) fail('iovaPast32', { iova });
    const r = this.s.iommu.iovaToPhys(did, iova);
    return { iova: hex(r.iova), paddr: hex(r.paddr), pageSize: r.pageSize, prot: protToNames(r.prot) };
  }

  pagetable(did: string): PagetableView {
    const d = this.s.iommu.domain(did);
    const dump = d.table.dumpTables();
    if (dump.kind === 'entries') {
      return { family: 'gart' as const, aperture: { base: hex(dump.aperture.base), size: dump.aperture.size }, entries: dump.entries.map((e) => ({ iova: hex(e.iova), pte: hex(e.pte) })) };
    }
    return {
      family: d.family,
      ttbr0: hex(dump.root),
      l1: dump.l1.map((e) => ({ index: e.index, desc: hex(e.desc) })),
      l2: dump.l2.map((t) => ({ base: hex(t.base), entries: t.entries.map((e) => ({ index: e.index, desc: hex(e.desc) })) })),
    };
  }

  /** A device's DMA state; reading creates nothing: a device the DMA API has not used yet has no DMA domain. */
  dmaState(device: string): DmaStateView {
    const st = this.s.dma.devices.get(device);
    if (!st) return { device, mode: 'iommu' as const, domain: null, flushPolicy: 'strict' as const, dmaLimit: '0xffffffff', pendingFlush: 0, mappings: [] };
    return dmaStateView(st);
  }

  pools(): Json<typeof S.PoolsResponse> {
    return this.s.pools.usage().map((p) => ({ ...p, base: hex(p.base) }));
  }

  /** Up to `limit` allocated buffers from paddr `from` on, in paddr order. */
  buffers(from: number, limit: number): Page<BufferView> {
    const bufs = [...this.s.pools.buffers.values()].filter((b) => b.paddr >= from).sort((a, b) => a.paddr - b.paddr);
    const kept = bufs.slice(0, limit);
    const last = kept[kept.length - 1];
    return { items: kept.map(bufferView), ...(bufs.length > limit && last ? { next: last.paddr + 1 } : {}) };
  }

  /** Refuses [paddr, +size) unless it is RAM of the profile, within the per-request bound. */
  checkRam(paddr: number, size: number): void {
    checkRam(this.s.soc.mem, paddr, size);
  }

  /** RAM as devices see it (no CPU cache in between): a read that changes nothing. */
  ram(paddr: number, size: number): Uint8Array {
    checkRam(this.s.soc.mem, paddr, size);
    return this.s.soc.mem.readBytes(paddr, size);
  }
}
