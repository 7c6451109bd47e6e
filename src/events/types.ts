/**
 * Every event iommud emits, declared once with typed fields (QEMU trace-events style: stable names, stable
 * fields). From this one declaration come the type every `emit()` call is checked against, the SDK's event types,
 * schemas/Event.json and the events socket's description in OpenAPI. The session's bus stamps `seq`, `time` and
 * `by`; producers only describe what happened.
 *
 * This module depends on zod alone, so the emulator core can import it; src/api/schemas.ts takes the shared
 * vocabulary (hex strings, access kinds, families...) from here.
 */
import { z } from 'zod';

// ---- vocabulary shared with the API schemas ---------------------------------------------------------------------
export const Hex = z.string().meta({ description: 'lower-case hex with 0x' });
export const ProtFlag = z.enum(['read', 'write', 'noexec', 'cache', 'mmio', 'priv']);
export const Role = z.enum(['observer', 'operator', 'owner']);
export const PageCounts = z.object({ '4K': z.number(), '64K': z.number(), '1M': z.number(), '16M': z.number() });
export const AccessKind = z.enum(['read', 'write', 'exec']);
export const FaultKind = z.enum(['translation', 'permission', 'access-flag', 'external', 'multi-hit', 'tlb-miss']);
export const Family = z.enum(['msm', 'omap', 'gart']).meta({ description: 'IOMMU family: msm (the v1 SMMU), omap or gart' });
export const DmaDirection = z.enum(['to-device', 'from-device', 'bidirectional']);
export const DmaMode = z.enum(['iommu', 'direct']);
export const FlushPolicy = z.enum(['strict', 'deferred']);
export const FaultMode = z.enum(['terminate', 'stall']);
export const CoherencyCheck = z.enum(['stale-cpu-read', 'device-read-stale', 'lost-device-write', 'cpu-access-device-owned']);

/** What the bus adds to every event. */
export const STAMP = {
  /** Rises by one per event in a session. */
  seq: z.number().int().min(1),
  time: z.iso.datetime(),
  /** Who caused it: the token's role and label (absent for what no request caused: stall timeouts, DMA flush timers). */
  by: z.strictObject({ role: Role, label: z.string().nullable() }).optional(),
};

/** One event type (or one variant of it): its fields, no others (strict), and the bus's stamp. */
function event<T extends string, F extends z.ZodRawShape>(type: T, fields: F) {
  return z.strictObject({ type: z.literal(type), ...STAMP, ...fields });
}

/** Where an event happened in the hardware: the `device` filter matches `device`, or `domain` via attachment. */
const AT_CONTEXT = { smmu: z.string(), context: z.number().int(), device: z.string().nullable(), domain: z.string().nullable() };

// ---- faults (one shape per family: each reports its own registers) --------------------------------------------
const FAULT_COMMON = {
  ...AT_CONTEXT,
  iova: Hex,
  access: AccessKind,
  priv: z.boolean(),
  /** IOMMU_FAULT_READ 0x0 / IOMMU_FAULT_WRITE 0x1, as a fault handler receives them. */
  flags: z.number().int(),
  kind: FaultKind,
};
/** What every family's fault reports (the access routes' fault objects require these; API.md "Fault object"). */
export const FaultCommon = z.strictObject(FAULT_COMMON);
/** msm: FSR/FAR/FSYNR as they are after this fault; `stall` when the context is in stall mode. */
export const MsmFault = z.strictObject({
  ...FAULT_COMMON,
  family: z.literal('msm'),
  fsr: Hex,
  fsrBits: z.array(z.string()),
  far: Hex,
  fsynr0: Hex,
  fsynr1: Hex,
  stall: z.string().optional(),
});
export const OmapFault = z.strictObject({ ...FAULT_COMMON, family: z.literal('omap'), irqstatus: Hex, irqstatusBits: z.array(z.string()), faultAd: Hex });
export const GartFault = z.strictObject({
  ...FAULT_COMMON,
  family: z.literal('gart'),
  intstatus: Hex,
  errorReq: Hex,
  errorAddr: Hex,
  client: z.strictObject({ id: z.number().int(), name: z.string() }),
});

const Range = z.strictObject({ iova: Hex, size: z.number() });
const ProtNames = z.array(ProtFlag);
const DmaOther = z.strictObject({ device: z.string(), dmaAddr: Hex, paddr: Hex, size: z.number(), dir: DmaDirection });
const AT_DMA = { device: z.string(), domain: z.string().nullable() };
const DMA_DEBUG = { ...AT_DMA, message: z.string() };

/** Every event, by `type` (and, where one type has variants, by `family`, `action` or `check`). */
export const Event = z.discriminatedUnion('type', [
  z.discriminatedUnion('family', [event('fault', MsmFault.shape), event('fault', OmapFault.shape), event('fault', GartFault.shape)]),
  /** A transaction stalled (msm, stall mode): answer it with resume (REST or this socket). */
  event('stall', { ...AT_CONTEXT, stall: z.string(), fault: MsmFault }),
  /** A stall resolved: by a client (retry, terminate) or by the session's stallTimeoutMs (timeout). */
  event('resume', {
    ...AT_CONTEXT,
    stall: z.string(),
    action: z.enum(['retry', 'terminate', 'timeout']),
    outcome: z.enum(['ok', 'fault', 'stalled', 'terminated']),
  }),
  /** A TLB entry served a translation the page table no longer gives (a missing flush); `current` null: unmapped. */
  event('stale-tlb-hit', {
    ...AT_CONTEXT,
    iova: Hex,
    stale: z.strictObject({ paddr: Hex, prot: ProtNames }),
    current: z.strictObject({ paddr: Hex, prot: ProtNames }).nullable(),
  }),
  event('map', { domain: z.string(), iova: Hex, paddr: Hex, size: z.number(), prot: ProtNames, pages: PageCounts.strict() }),
  event('unmap', { domain: z.string(), iova: Hex, size: z.number(), unmapped: z.number() }),
  /** `replaced`: the domain the device was attached to before (attach with replace). */
  event('attach', { domain: z.string(), device: z.string(), ttbr0: Hex, replaced: z.string().optional() }),
  event('detach', { domain: z.string(), device: z.string() }),
  /** A TLB invalidation on every attached context: whole (no iova) or by range. */
  event('flush', { domain: z.string(), iova: Hex.optional(), size: z.number().optional(), contexts: z.number().int(), invalidated: z.number().int() }),
  event('sync', { domain: z.string(), ranges: z.array(Range), invalidated: z.number().int() }),
  /** DMA-debug: a refused misuse (the DMA_DEBUG error's details) or a mapping leaked by detach or domain free. */
  z.discriminatedUnion('check', [
    event('dma-debug', { ...DMA_DEBUG, check: z.literal('unknown-handle'), dmaAddr: Hex }),
    event('dma-debug', { ...DMA_DEBUG, check: z.literal('size-mismatch'), dmaAddr: Hex, mapped: z.number(), size: z.number() }),
    event('dma-debug', { ...DMA_DEBUG, check: z.literal('direction-mismatch'), dmaAddr: Hex, mapped: DmaDirection, dir: DmaDirection }),
    event('dma-debug', { ...DMA_DEBUG, check: z.literal('sync-outside-mapping'), dmaAddr: Hex, offset: z.number(), size: z.number() }),
    /** `other`: the live mapping this one overlaps; `dmaAddr` instead when a direct mapping already sits there. */
    event('dma-debug', { ...DMA_DEBUG, check: z.literal('overlapping-mapping'), paddr: Hex, other: DmaOther.optional(), dmaAddr: Hex.optional() }),
    event('dma-debug', { ...AT_DMA, check: z.literal('leak'), reason: z.enum(['detach', 'domain-free']), dmaAddr: Hex, size: z.number(), dir: DmaDirection }),
  ]),
  event('session', { action: z.enum(['create', 'delete']), session: z.string() }),
  z.discriminatedUnion('action', [
    event('domain', { action: z.literal('alloc'), domain: z.string(), family: Family, ttbr0: Hex }),
    event('domain', { action: z.literal('free'), domain: z.string() }),
  ]),
  /**
   * A register write with a translation effect. `context`/`device` are null for global registers; `index` is
   * the bank of a banked msm register, `iova` the GART entry written; write-only registers report the value
   * written as `new`.
   */
  event('mmio', {
    smmu: z.string(),
    context: z.number().int().nullable(),
    device: z.string().nullable(),
    domain: z.string().nullable(),
    register: z.string(),
    index: z.number().int().optional(),
    iova: Hex.optional(),
    offset: Hex,
    old: Hex,
    new: Hex,
  }),
  z.discriminatedUnion('action', [
    event('context', { ...AT_CONTEXT, action: z.literal('configure'), faultMode: FaultMode, faultInterrupt: z.boolean() }),
    /** `fsr` for msm (FSR), `value` for the families whose status register has another name (`register`). */
    event('context', { ...AT_CONTEXT, action: z.literal('clear-fault'), register: z.string(), old: Hex, fsr: Hex.optional(), value: Hex.optional() }),
    event('context', { ...AT_CONTEXT, action: z.literal('inject-fault'), kind: z.enum(['external', 'multi-hit', 'tlb-miss']) }),
  ]),
  event('buffer', { action: z.enum(['alloc', 'free']), paddr: Hex, size: z.number(), pool: z.string() }),
  /** A CPU store (PUT .../memory). */
  event('memory', { action: z.literal('write'), paddr: Hex, size: z.number() }),
  z.discriminatedUnion('action', [
    event('dma', { ...AT_DMA, action: z.literal('config'), mode: DmaMode, flushPolicy: FlushPolicy, dmaLimit: Hex }),
    event('dma', { ...AT_DMA, action: z.enum(['map', 'map-sg', 'unmap']), dmaAddr: Hex, size: z.number(), dir: DmaDirection }),
    event('dma', { ...AT_DMA, action: z.literal('sync'), dmaAddr: Hex, size: z.number(), for: z.enum(['cpu', 'device']) }),
  ]),
  /** A CPU cache coherency check (API.md v1.1): never a refusal; reported once per line and cause. */
  event('coherency', { check: CoherencyCheck, device: z.string().nullable(), paddr: Hex, size: z.number(), dmaAddr: Hex.optional() }),
  /** One bounce copy (swiotlb): `dir` is the mapping's direction, `from`/`to` the copy's physical addresses. */
  event('bounce', { device: z.string(), dir: DmaDirection, from: Hex, to: Hex, bytes: z.number(), dmaAddr: Hex }),
  /** CPU cache maintenance (POST .../cache/clean|invalidate|flush): `lines` touched. */
  event('cache', { action: z.enum(['clean', 'invalidate', 'flush']), paddr: Hex, size: z.number(), lines: z.number().int() }),
]).meta({ description: 'One message of the events socket for each event: {seq, time, type, ...the type\'s fields}' });

/** An event as subscribers receive it. */
export type IommuEvent = z.infer<typeof Event>;
export type EventType = IommuEvent['type'];
/** The event of one type (its variants included). */
export type EventOf<T extends EventType> = Extract<IommuEvent, { type: T }>;

type Unstamped<E> = E extends unknown ? Omit<E, 'seq' | 'time' | 'by'> : never;
/** What a producer emits: an event without the bus's stamp. A wrong or missing field is a compile error. */
export type EventBody = Unstamped<IommuEvent>;

/** Every event type, in declaration order (the `types` filter accepts exactly these). */
export const EVENT_TYPES = [...new Set(flatten(Event).map((o) => o.shape.type.value))] as [EventType, ...EventType[]];

/** The object schemas of a (nested) discriminated union. */
function flatten(u: z.ZodType): Array<z.ZodObject<{ type: z.ZodLiteral<EventType> }>> {
  if (u instanceof z.ZodDiscriminatedUnion) return (u.options as z.ZodType[]).flatMap(flatten);
  return [u as z.ZodObject<{ type: z.ZodLiteral<EventType> }>];
}

/** The other messages of the events socket: a gap notice, and a refused resume's error. */
export const GapMessage = z.strictObject({ type: z.literal('gap'), from: z.number().int(), to: z.number().int() });
export const SocketErrorMessage = z.strictObject({
  type: z.literal('error'),
  error: z.strictObject({ code: z.string(), message: z.string(), details: z.record(z.string(), z.unknown()).optional() }),
});

export interface EventSink {
  emit(ev: EventBody): void;
  /** A sink that can keep a map or unmap event as its values (EventBus) takes them here instead of the event. */
  emitMap?(domain: string, iova: number, paddr: number, size: number, prot: EventOf<'map'>['prot'], pages: EventOf<'map'>['pages']): void;
  emitUnmap?(domain: string, iova: number, size: number, unmapped: number): void;
}

export const NULL_SINK: EventSink = { emit() {} };
