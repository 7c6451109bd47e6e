/**
 * The API's zod schemas: the one source of request/response types, validation, the JSON Schema files in
 * schemas/ and the OpenAPI document. Shared by the server and the SDK; nothing below the session imports this.
 */
import { z } from 'zod';
import { AccessKind, DmaDirection, DmaMode, EVENT_TYPES, Event, Family, FaultCommon, FaultKind, GapMessage, GartFault, Hex, MsmFault, OmapFault, PageCounts, ProtFlag, Role, SocketErrorMessage, STAMP } from '../events/types.js';

// The vocabulary the events share: declared once in src/events/types.ts (the emulator core emits with it).
export { AccessKind, DmaDirection, DmaMode, Event, Family, FaultKind, GapMessage, Hex, PageCounts, ProtFlag, Role, SocketErrorMessage };

const HEX = /^0[xX][0-9a-fA-F]+$/;

/** An address or size in a body: a JSON integer or a hex string; decimal strings are refused. */
export const Addr = z
  // The hex branch first, with an example: OpenAPI UIs build their sample request from the first branch. At most
  // 13 significant hex digits (2^52, inside the exact integers like a JSON number): a longer string is refused here
  // rather than turned into Infinity; past 0xffffffff the operation itself answers OUT_OF_RANGE.
  .union([
    z.string().regex(HEX, 'hex string like "0x1000"').regex(/^0[xX]0*[0-9a-fA-F]{1,13}$/, 'hex string of at most 13 significant digits').meta({ example: '0x10000000' }),
    z.number().int().nonnegative(),
  ])
  .transform((v) => (typeof v === 'string' ? parseInt(v, 16) : v))
  .meta({ description: 'hex string ("0x1000") or integer' });

/** An address in a path or query: hex or decimal. */
export const ParamAddr = z
  .string()
  .regex(/^(0[xX][0-9a-fA-F]+|[0-9]+)$/, 'hex ("0x1000") or decimal')
  .transform((v) => (/^0[xX]/.test(v) ? parseInt(v, 16) : Number(v)));

/** The last string isBase64 accepted: the route and the command gate check the same body text. */
let lastBase64 = '';

/**
 * Base64 exactly as zod's z.base64() accepts it (the RFC 4648 alphabet, length a multiple of 4, at most two '='
 * at the end), checked by decoding it: native passes instead of a whitespace regex and an atob string over a
 * multi-MB body. Buffer's decoder skips what is outside the alphabet and stops at '=', so any stray character
 * makes the decoded length fall short; it also reads the URL alphabet ('-', '_') and only the low byte of a
 * non-ASCII character, which are refused first.
 */
export function isBase64(s: string): boolean {
  if (s.length % 4 !== 0) return false;
  if (s.length === 0 || s === lastBase64) return true;
  if (Buffer.byteLength(s, 'utf8') !== s.length || s.includes('-') || s.includes('_')) return false;
  const pad = s.endsWith('==') ? 2 : s.endsWith('=') ? 1 : 0;
  if (Buffer.from(s, 'base64').length !== (s.length / 4) * 3 - pad) return false;
  lastBase64 = s;
  return true;
}

/** A base64 string (RFC 4648, padded); documented as z.base64() is. */
export const Base64 = z
  .string()
  .refine(isBase64, 'Invalid base64-encoded string')
  .meta({ format: 'base64', contentEncoding: 'base64', pattern: '^$|^(?:[0-9a-zA-Z+/]{4})*(?:(?:[0-9a-zA-Z+/]{2}==)|(?:[0-9a-zA-Z+/]{3}=))?$' });

export const Prot = z.array(ProtFlag);

/** The body of a 204 reply: none. */
export const NoContent = z.null().meta({ description: 'No Content' });

export const ErrorBody = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.record(z.string(), z.unknown()).optional() }),
});

// ---- profiles -------------------------------------------------------------------------------------------------
const Int = z.number().int();
export const ContextSpec = z.strictObject({ index: Int.min(0).max(63), name: z.string().min(1).max(64), mids: z.array(Int.min(0).max(255)).max(256) });
export const SmmuSpec = z.strictObject({
  name: z.string().min(1).max(64),
  family: Family.optional(),
  base: Addr,
  /** Required for msm; optional (1) for omap and gart. */
  banks: Int.min(1).max(64).optional(),
  contexts: z.array(ContextSpec).max(64),
  /** gart only: the aperture its entries translate. */
  aperture: z.strictObject({ base: Addr, size: Addr }).optional(),
  /** omap only: attach writes GP_REG = 1 (bus-error-back on faults). */
  busErrorBack: z.boolean().optional(),
});
export const MemorySpec = z.strictObject({ name: z.string().min(1).max(64), base: Addr, size: Addr, priority: Int.default(0) });
export const Topology = z.strictObject({
  name: z.string().min(1).max(64).default('inline'),
  description: z.string().max(500).default('inline topology'),
  smmus: z.array(SmmuSpec).min(1).max(64),
  memory: z.array(MemorySpec).min(1).max(16),
  pagetablePool: z.strictObject({ base: Addr, size: Addr }),
});

const ProfileOut = z.object({
  name: z.string(),
  description: z.string(),
  smmus: z.array(
    z.object({
      name: z.string(),
      family: Family,
      base: Hex,
      banks: z.number(),
      aperture: z.object({ base: Hex, size: z.number() }).optional(),
      contexts: z.array(z.object({ index: z.number(), name: z.string(), mids: z.array(z.number()) })),
    }),
  ),
  memory: z.array(z.object({ name: z.string(), base: Hex, size: z.number(), priority: z.number() })),
  pagetablePool: z.object({ base: Hex, size: z.number() }),
});
export const ProfilesResponse = z.array(ProfileOut);

// ---- CPU cache (v1.1) -------------------------------------------------------------------------------------------
export const CpuCacheSetting = z.strictObject({
  lineSize: Int.optional().meta({ description: '32 or 64 (default 32)' }),
  lines: Int.optional().meta({ description: '1 .. 65536 (default 8192)' }),
  coherent: z.array(z.string().max(64)).max(256).optional(),
});
export const BounceSetting = z.strictObject({ paddr: Addr, size: Addr });
export const CacheQuery = z.strictObject({ paddr: ParamAddr.optional(), size: ParamAddr.optional() });
export const CacheResponse = z.object({ lineSize: z.number(), lines: z.number(), used: z.number(), entries: z.array(z.object({ paddr: Hex, dirty: z.boolean() })) });
export const CacheRangeBody = z.strictObject({ paddr: Addr, size: Addr });
export const CacheMaintainResponse = z.object({ lines: z.number() });
export const CoherencyCounts = z.object({ 'stale-cpu-read': z.number(), 'device-read-stale': z.number(), 'lost-device-write': z.number(), 'cpu-access-device-owned': z.number() });

// ---- sessions -------------------------------------------------------------------------------------------------
export const TlbPolicy = z.enum(['lru', 'round-robin', 'flush-all']);
/** What a session is made of, with its bounds: a request body and a trace's header are held to the same ones. */
const SessionName = z.string().max(128);
const SessionProfile = z.union([z.string().max(64), Topology]);
const TlbEntries = Int.min(0).max(65536);
const StallTimeoutMs = Int.min(1).max(3_600_000);
export const CreateSessionBody = z
  .strictObject({
    name: SessionName.optional(),
    profile: SessionProfile.optional(),
    tlbEntries: TlbEntries.optional(),
    tlbPolicy: TlbPolicy.optional(),
    stallTimeoutMs: StallTimeoutMs.optional(),
    persist: z.boolean().optional(),
    cpuCache: CpuCacheSetting.optional(),
    bounce: BounceSetting.optional(),
    /** A trace (GET .../trace) to replay: JSON lines as one string, or the records as an array. */
    trace: z.union([z.string().max(512 * 1024 * 1024), z.array(z.record(z.string(), z.unknown()))]).optional(),
  })
  .nullish();
/**
 * The first line of a trace (and of a journal): what the session was made with. Held to CreateSessionBody's bounds;
 * the format version is checked by the reader (a newer one is refused, not misread). Unknown keys are kept for it.
 */
export const TraceHeader = z.looseObject({
  format: z.literal('iommud-trace'),
  version: Int.min(1),
  gen: Int.min(0).optional(),
  session: z.looseObject({
    id: z.string().max(128).optional(),
    name: SessionName.optional(),
    profile: SessionProfile,
    tlbEntries: TlbEntries.optional(),
    tlbPolicy: TlbPolicy.optional(),
    stallTimeoutMs: StallTimeoutMs.optional(),
    createdAt: z.string().max(64).optional(),
    cpuCache: CpuCacheSetting.optional(),
    bounce: BounceSetting.optional(),
  }),
});
export const CreateSessionResponse = z.object({ id: z.string(), name: z.string(), profile: z.string(), token: z.string(), createdAt: z.string() });
export const SessionResponse = z.object({
  id: z.string(),
  name: z.string(),
  profile: z.string(),
  createdAt: z.string(),
  revision: z.number(),
  tlbEntries: z.number(),
  tlbPolicy: TlbPolicy,
  domains: z.number(),
  subscribers: z.number(),
  lastSeq: z.number(),
  pools: z.array(z.object({ name: z.string(), used: z.number(), free: z.number() })),
  coherency: CoherencyCounts,
  cpuCache: z.object({ lineSize: z.number(), lines: z.number(), coherent: z.array(z.string()) }).nullable(),
  bounce: z.object({ paddr: Hex, size: z.number(), slots: z.number(), used: z.number() }).nullable(),
});
export const TokenBody = z.strictObject({ role: Role, label: z.string().max(128).optional() });
export const TokenResponse = z.object({ token: z.string(), role: Role, label: z.string().nullable() });

// ---- SMMUs and contexts ---------------------------------------------------------------------------------------
export const TlbStatsOut = z.object({ entries: z.number(), capacity: z.number(), policy: TlbPolicy.optional(), hits: z.number(), misses: z.number(), evictions: z.number(), invalidations: z.number() });
export const ContextResponse = z.object({
  smmu: z.string(),
  family: Family,
  index: z.number(),
  name: z.string().nullable(),
  device: z.string().nullable(),
  mids: z.array(z.number()),
  enabled: z.boolean(),
  domain: z.string().nullable(),
  /** Derived from ACTLR.CFCFG and CFEIE as they are now (API or MMIO wrote them). */
  faultMode: z.enum(['terminate', 'stall']),
  faultInterrupt: z.boolean(),
  /** The per-context setting (PATCH) that the IOMMU API's attach programs into ACTLR; kept across attach/detach. */
  /** msm: what the API's attach programs (faultMode/faultInterrupt above are what ACTLR holds now). */
  settings: z.object({ faultMode: z.enum(['terminate', 'stall']), faultInterrupt: z.boolean() }).optional(),
  stalls: z.array(z.object({ stall: z.string(), iova: Hex, access: AccessKind })),
  registers: z.record(z.string(), Hex),
  tlb: z.object({ entries: z.number(), hits: z.number(), misses: z.number(), evictions: z.number(), invalidations: z.number() }),
});
export const SmmusResponse = z.array(
  z.object({
    name: z.string(),
    family: Family,
    base: Hex,
    banks: z.number(),
    contexts: z.array(ContextResponse),
    tlb: TlbStatsOut,
    /** Family state: omap {lock: {base, victim}, tlb: [entries with locked/preserved]}; gart {aperture, entries, validEntries, activeDomain}. */
    details: z.record(z.string(), z.unknown()).optional(),
  }),
);
export const PatchContextBody = z.strictObject({ faultMode: z.enum(['terminate', 'stall']).optional(), faultInterrupt: z.boolean().optional() });
export const ClearFaultBody = z.strictObject({ value: Addr.optional() }).nullish();
export const ResumeBody = z.strictObject({ stall: z.string().min(1).max(64), action: z.enum(['retry', 'terminate']) });
export const InjectFaultBody = z.strictObject({ kind: z.enum(['external', 'multi-hit', 'tlb-miss']) });

// ---- MMIO -----------------------------------------------------------------------------------------------------
export const MmioWriteBody = z.strictObject({ value: Addr });
export const MmioResponse = z.object({ offset: Hex, register: z.string(), value: Hex });
export const MmioBatchBody = z.strictObject({
  ops: z.array(z.strictObject({ op: z.enum(['read', 'write']), offset: Addr, value: Addr.optional() })).min(1),
});
export const MmioBatchResponse = z.object({ results: z.array(MmioResponse) });

// ---- domains --------------------------------------------------------------------------------------------------
export const PgSize = z.union([z.literal(4096), z.literal(65536), z.literal(1048576), z.literal(16777216)]);
export const CreateDomainBody = z
  .strictObject({
    /** The device the domain is for: its IOMMU family sets the table format and rules. */
    for: z.string().min(1).max(64).optional(),
    pgsizes: z.array(PgSize).min(1).max(4).optional(),
    flushPolicy: z.enum(['strict', 'deferred']).optional(),
    partialUnmap: z.enum(['split', 'refuse']).optional(),
    label: z.string().max(128).optional(),
  })
  .nullish();
export const DomainResponse = z.object({
  id: z.string(),
  type: z.enum(['unmanaged', 'dma']),
  family: Family,
  label: z.string().nullable(),
  ttbr0: Hex,
  attached: z.array(z.string()),
  mappedBytes: z.number(),
  pages: PageCounts,
  pendingSync: z.array(z.object({ iova: Hex, size: z.number() })),
  pgsizes: z.array(z.number()),
  flushPolicy: z.enum(['strict', 'deferred']),
  partialUnmap: z.enum(['split', 'refuse']),
});
export const DomainsResponse = z.array(DomainResponse);
export const AttachBody = z.strictObject({ device: z.string().min(1).max(64), replace: z.boolean().optional() });
export const DetachBody = z.strictObject({ device: z.string().min(1).max(64) });
export const MapBody = z.strictObject({ iova: Addr, paddr: Addr, size: Addr, prot: Prot });
export const MapResponse = z.object({ iova: Hex, size: z.number(), pages: PageCounts });
export const UnmapBody = z.strictObject({ iova: Addr, size: Addr });
export const UnmapResponse = z.object({ unmapped: z.number() });
export const BatchBody = z.strictObject({
  ops: z
    .array(
      z.discriminatedUnion('op', [
        z.strictObject({ op: z.literal('map'), iova: Addr, paddr: Addr, size: Addr, prot: Prot }),
        z.strictObject({ op: z.literal('unmap'), iova: Addr, size: Addr }),
      ]),
    )
    .min(1),
});
export const BatchResponse = z.object({
  results: z.array(z.union([z.object({ op: z.literal('map'), iova: Hex, size: z.number(), pages: PageCounts }), z.object({ op: z.literal('unmap'), unmapped: z.number() })])),
});
export const MappingsQuery = z.strictObject({ from: ParamAddr.optional(), to: ParamAddr.optional(), limit: ParamAddr.optional() });
export const MappingsResponse = z.array(z.object({ iova: Hex, paddr: Hex, size: z.number(), pageSize: z.number(), prot: Prot }));
export const IovaToPhysResponse = z.object({ iova: Hex, paddr: Hex, pageSize: z.number(), prot: Prot });
/** msm and omap: the two-level table (bit-exact descriptors of the family's format). */
export const LevelsPagetable = z.object({
  family: Family,
  ttbr0: Hex,
  l1: z.array(z.object({ index: z.number(), desc: Hex })),
  l2: z.array(z.object({ base: Hex, entries: z.array(z.object({ index: z.number(), desc: Hex })) })),
});
/** gart: the valid entries of the domain (the GART's own while the domain is active). */
export const GartPagetable = z.object({ family: z.literal('gart'), aperture: z.object({ base: Hex, size: z.number() }), entries: z.array(z.object({ iova: Hex, pte: Hex })) });
export const PagetableResponse = z.union([LevelsPagetable, GartPagetable]);
export const FlushBody = z.strictObject({ iova: Addr.optional(), size: Addr.optional() }).nullish();
export const FlushResponse = z.object({ contexts: z.number(), invalidated: z.number() });
export const SyncResponse = z.object({ invalidated: z.number(), ranges: z.array(z.object({ iova: Hex, size: z.number() })) });

// ---- device access --------------------------------------------------------------------------------------------
export const AccessBody = z.strictObject({
  iova: Addr,
  access: AccessKind,
  priv: z.boolean().optional(),
  mid: Int.min(0).max(255).optional(),
  size: Int.min(1).max(4 * 1024 * 1024).optional(),
  data: Base64.max(6 * 1024 * 1024).optional(),
});
/**
 * A fault as the access routes answer it: the fault event (src/events/types.ts) of any family, as one object.
 * The fields every family reports are required, each family's registers optional (API.md: fault objects carry
 * `family` and that family's registers), `seq` and `time` as the bus stamps them, when present.
 */
export const FaultOut = z.object({
  seq: STAMP.seq.optional(),
  time: STAMP.time.optional(),
  ...MsmFault.partial().shape,
  ...OmapFault.partial().shape,
  ...GartFault.partial().shape,
  ...FaultCommon.shape,
  family: Family.optional(),
});
export const AccessResponse = z.union([
  z.object({
    outcome: z.literal('ok'),
    paddr: Hex,
    tlb: z.enum(['hit', 'miss', 'bypass']),
    stale: z.boolean().optional(),
    unbacked: z.boolean().optional(),
    data: z.string().optional(),
    segments: z.array(z.object({ iova: Hex, paddr: Hex, size: z.number(), tlb: z.enum(['hit', 'miss', 'bypass']), unbacked: z.boolean().optional() })).optional(),
  }),
  z.object({ outcome: z.literal('fault'), fault: FaultOut }),
  z.object({ outcome: z.literal('stalled'), stall: z.string(), fault: FaultOut }),
  z.object({ outcome: z.literal('terminated') }),
]);
export const AccessBatchBody = z.strictObject({
  access: AccessKind,
  priv: z.boolean().optional(),
  mid: Int.min(0).max(255).optional(),
  iovas: z.array(Addr).min(1),
});
export const AccessBatchResponse = z.object({ results: z.array(AccessResponse) });

// ---- events ---------------------------------------------------------------------------------------------------
export const EventType = z.enum(EVENT_TYPES);
export const EventsQuery = z.strictObject({
  token: z.string().optional(),
  types: z
    .string()
    .optional()
    .refine((s) => s === undefined || s.split(',').every((t) => (EVENT_TYPES as readonly string[]).includes(t)), 'unknown event type'),
  device: z.string().max(64).optional(),
  since: z.string().regex(/^[0-9]+$/).transform(Number).optional(),
  /** Capability `event-batches`: `1` sends each tick's events as one JSON array message (gaps and errors stay single objects). */
  batch: z.enum(['0', '1']).optional().meta({ description: 'capability event-batches: 1 = the events of one burst arrive as one JSON array message; gap and error messages stay single objects' }),
});

// ---- operations -----------------------------------------------------------------------------------------------
/** `node`: the cluster node id of this daemon (the prefix of its session ids). */
export const HealthResponse = z.object({ status: z.literal('ok'), node: z.string(), sessions: z.number(), uptime: z.number() });
export const VersionResponse = z.object({ name: z.string(), version: z.string(), api: z.literal('v1'), node: z.string(), capabilities: z.array(z.string()) });

/** Every request/response body schema, by the file name `npm run schemas` writes into schemas/. */
export const SCHEMAS: Record<string, z.ZodType> = {
  Error: ErrorBody,
  Topology,
  ProfilesResponse,
  CreateSessionBody,
  CreateSessionResponse,
  SessionResponse,
  TokenBody,
  TokenResponse,
  SmmusResponse,
  ContextResponse,
  PatchContextBody,
  ClearFaultBody,
  ResumeBody,
  InjectFaultBody,
  MmioWriteBody,
  MmioResponse,
  MmioBatchBody,
  MmioBatchResponse,
  CreateDomainBody,
  DomainResponse,
  DomainsResponse,
  AttachBody,
  DetachBody,
  MapBody,
  MapResponse,
  UnmapBody,
  UnmapResponse,
  BatchBody,
  BatchResponse,
  MappingsResponse,
  IovaToPhysResponse,
  PagetableResponse,
  FlushBody,
  FlushResponse,
  SyncResponse,
  AccessBody,
  AccessResponse,
  AccessBatchBody,
  AccessBatchResponse,
  HealthResponse,
  VersionResponse,
  Event,
};

// ---- physical memory, buffers, DMA API ------------------------------------------------------------------------
export const BufferBody = z.strictObject({ size: Addr, pools: z.array(z.string().max(64)).min(1).max(16).optional(), align: Addr.optional() });
export const BufferResponse = z.object({ paddr: Hex, size: z.number(), pool: z.string() });
export const BuffersResponse = z.array(BufferResponse);
/** A page of a long list: items from `from` on, at most `limit` (the next page is in the Link header). */
export const PageQuery = z.strictObject({ from: ParamAddr.optional(), limit: ParamAddr.optional() });
export const MemoryQuery = z.strictObject({ paddr: ParamAddr, size: ParamAddr.optional(), view: z.enum(['cpu', 'ram']).optional() });
export const DmaMapBody = z.strictObject({ paddr: Addr, size: Addr, dir: DmaDirection });
export const DmaMapResponse = z.object({ dmaAddr: Hex, size: z.number() });
export const DmaMapSgBody = z.strictObject({ segments: z.array(z.strictObject({ paddr: Addr, size: Addr })).min(1), dir: DmaDirection });
export const DmaMapSgResponse = z.object({ dmaAddr: Hex, segments: z.array(z.object({ dmaAddr: Hex, size: z.number() })) });
export const DmaUnmapBody = z.strictObject({ dmaAddr: Addr, size: Addr, dir: DmaDirection });
export const DmaSyncBody = z.strictObject({ dmaAddr: Addr, size: Addr, offset: Addr.optional(), for: z.enum(['cpu', 'device']), dir: DmaDirection.optional() });
export const DmaConfigBody = z.strictObject({ flushPolicy: z.enum(['strict', 'deferred']).optional(), dmaLimit: Addr.optional(), mode: DmaMode.optional() });
const BounceOut = z.object({ paddr: Hex, slots: z.number() }).nullable();
export const DmaStateResponse = z.object({
  device: z.string(),
  mode: DmaMode,
  domain: z.string().nullable(),
  flushPolicy: z.enum(['strict', 'deferred']),
  dmaLimit: Hex,
  pendingFlush: z.number(),
  mappings: z.array(
    z.object({
      dmaAddr: Hex,
      size: z.number(),
      dir: DmaDirection,
      owner: z.enum(['cpu', 'device']).optional(),
      bounce: BounceOut,
      segments: z.array(z.object({ paddr: Hex, size: z.number(), dmaAddr: Hex, bounce: BounceOut })),
    }),
  ),
});
export const PoolsResponse = z.array(z.object({ name: z.string(), base: Hex, size: z.number(), used: z.number(), free: z.number(), largestFree: z.number(), priority: z.number() }));

Object.assign(SCHEMAS, {
  BufferBody,
  BufferResponse,
  BuffersResponse,
  DmaMapBody,
  DmaMapResponse,
  DmaMapSgBody,
  DmaMapSgResponse,
  DmaUnmapBody,
  DmaSyncBody,
  DmaConfigBody,
  DmaStateResponse,
  PoolsResponse,
  CacheResponse,
  CacheRangeBody,
  CacheMaintainResponse,
});
