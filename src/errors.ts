import type { IommuEvent } from './events/types.js';

/**
 * One table of error codes, as API.md lists them (Fastify's lib/errors.js habit): every refusal anywhere in
 * iommud is an IommuError with one of these codes, so the HTTP status is never decided ad hoc.
 */
export const ERROR_STATUS = {
  BAD_REQUEST: 400,
  UNSUPPORTED_MEDIA_TYPE: 415,
  UNALIGNED: 400,
  OUT_OF_RANGE: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  NOT_MAPPED: 404,
  ALREADY_MAPPED: 409,
  DEVICE_BUSY: 409,
  DOMAIN_ATTACHED: 409,
  NOT_ATTACHED: 409,
  PARTIAL_UNMAP: 409,
  DOMAIN_TYPE: 409,
  DMA_DEBUG: 409,
  NO_SPACE: 507,
  PAYLOAD_TOO_LARGE: 413,
  LIMIT: 429,
  /** Persistence failed (disk full, permission): mutations are refused, reads keep working. */
  UNAVAILABLE: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class IommuError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'IommuError';
    this.code = code;
    this.status = ERROR_STATUS[code];
    this.details = details && addressesAsHex(details);
  }

  toJSON(): { error: { code: ErrorCode; message: string; details?: Record<string, unknown> } } {
    return { error: { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) } };
  }

  /** The same refusal seen from a caller that says where it happened ("op 3: ...", "trace record 7: ..."). */
  within(where: string, details: Record<string, unknown>, code: ErrorCode = this.code): IommuError {
    return new IommuError(code, `${where}: ${this.message}`, { ...this.details, ...details });
  }
}

// ---- message templates -------------------------------------------------------------------------------------------

/** One entry of the table: the code a refusal carries, its message and its details, both built from parameters. */
export interface Template<P> {
  readonly code: ErrorCode;
  message(p: P): string;
  details(p: P): Record<string, unknown> | undefined;
}

/** A template whose details are its parameters (none: no details), unless `details` says otherwise. */
function t<P extends object = Record<never, never>>(code: ErrorCode, message: (p: P) => string, details?: (p: P) => Record<string, unknown> | undefined): Template<P> {
  return { code, message, details: details ?? ((p) => (Object.keys(p).length ? (p as Record<string, unknown>) : undefined)) };
}
const none = (): undefined => undefined;

type Issue = { path: string; message: string };
type DmaDebug = Extract<IommuEvent, { type: 'dma-debug' }>;
/** The fields a DMA-debug refusal reports (its details, and its event's), by check. */
export type DmaDebugReport<C extends DmaDebug['check'] = Exclude<DmaDebug['check'], 'leak'>> = C extends unknown
  ? Omit<Extract<DmaDebug, { check: C }>, 'type' | 'seq' | 'time' | 'by' | 'device' | 'domain' | 'message'>
  : never;
/** A DMA-debug template: details are the report; the other parameters only shape the message. */
function dmaDebug<C extends DmaDebugReport['check'], X extends object = Record<never, never>>(_check: C, message: (p: { report: DmaDebugReport<C> } & X) => string): Template<{ report: DmaDebugReport<C> } & X> {
  return t('DMA_DEBUG', message, (p) => p.report);
}

/**
 * Every refusal's message, by name (Fastify's lib/errors.js habit): `fail('noDomain', { domain })`. Addresses in
 * details are numbers here and leave as hex strings (IommuError). The unit test builds each one and checks its
 * code and status against API.md's table.
 */
export const ERRORS = {
  // ---- the HTTP shell: tokens, roles, media types, limits
  missingToken: t('UNAUTHORIZED', () => 'missing bearer token'),
  unknownToken: t('UNAUTHORIZED', () => 'unknown token for this session'),
  roleTooLow: t('FORBIDDEN', (p: { role: string; needed: string }) => `this needs the ${p.needed} role; the token is ${p.role}`),
  rateLimited: t('LIMIT', (p: { perSecond: number; retryAfterMs: number }) => `rate limit: at most ${p.perSecond} requests per second for this session`, (p) => ({ retryAfterMs: p.retryAfterMs })),
  invalidInput: t(
    'BAD_REQUEST',
    (p: { what: string; issues: Issue[]; under?: string }) => `invalid ${p.what}: ${p.issues.map((i) => `${i.path} ${i.message}`).join('; ')}`,
    (p) => ({ [p.under ?? 'issues']: p.issues }),
  ),
  contentTypeRefused: t('UNSUPPORTED_MEDIA_TYPE', (p: { contentType: string }) => `content type ${p.contentType} is not accepted here: send application/json`, none),
  charsetRefused: t('UNSUPPORTED_MEDIA_TYPE', (p: { charset: string }) => `charset ${p.charset} is not accepted: send UTF-8 JSON`),
  bodyTooLarge: t('PAYLOAD_TOO_LARGE', () => 'request body is over the configured limit'),
  headersTooLarge: t('PAYLOAD_TOO_LARGE', () => 'request headers are over the limit (16 KiB)'),
  requestTimeout: t('BAD_REQUEST', () => 'the request did not arrive in time'),
  malformedHttp: t('BAD_REQUEST', () => 'malformed HTTP request'),
  noRoute: t('NOT_FOUND', (p: { method: string; path: string }) => `no route ${p.method} ${p.path}`, none),
  unknownProfile: t('BAD_REQUEST', (p: { profile: string; known: string[] }) => `unknown profile ${p.profile}`),
  persistNeedsDataDir: t('BAD_REQUEST', () => 'persist: true needs a daemon started with --data-dir', () => ({ field: 'persist' })),
  memoryBodyNotBinary: t('BAD_REQUEST', () => 'PUT /memory takes an application/octet-stream body'),
  tooManySubscribers: t('LIMIT', (p: { limit: number }) => `a session takes at most ${p.limit} subscribers`),

  // ---- the events and stream sockets
  socketNotJson: t('BAD_REQUEST', () => 'messages are JSON'),
  badSocketMessage: t('BAD_REQUEST', () => 'expected {type:"resume", stall, action}'),
  resumeForbidden: t('FORBIDDEN', () => 'resume needs the operator role'),
  resumeFailed: t('UNAVAILABLE', () => 'the resume could not be applied'),
  streamNotBinary: t('BAD_REQUEST', () => 'the stream takes binary frames (docs/stream.md)'),
  badFrame: t('BAD_REQUEST', (p: { reason: string }) => p.reason, none),
  batchNotDurable: t('UNAVAILABLE', () => 'the batch was applied but could not be made durable'),

  // ---- commands: batches, ranges, shapes
  batchTooLarge: t('PAYLOAD_TOO_LARGE', (p: { limit: number; got: number }) => `a batch holds at most ${p.limit} items`),
  memoryIoTooLarge: t('PAYLOAD_TOO_LARGE', (p: { limit: number; size: number }) => `at most ${p.limit} bytes per request`, (p) => ({ size: p.size })),
  notRam: t('OUT_OF_RANGE', (p: { paddr: number; size: number }) => `[${hex(p.paddr)}, +${p.size}) is not RAM of this profile`),
  iovaRange: t('OUT_OF_RANGE', (p: { iova: number; size: number | undefined; sizeMin?: boolean }) => `iova + size must lie within the 32-bit space${p.sizeMin ? ', size > 0' : ''}`, (p) => ({ iova: p.iova, size: p.size })),
  paddrRange: t('OUT_OF_RANGE', (p: { paddr: number; size: number }) => 'paddr + size must lie within the 32-bit space, size > 0'),
  iovaPast32: t('OUT_OF_RANGE', (p: { iova: number }) => 'iova is past 0xffffffff'),
  registerValue32: t('OUT_OF_RANGE', (p: { value?: number; op?: number }) => 'a register value is 32 bits', (p) => ({ ...(p.value !== undefined ? { value: hex(p.value) } : {}), ...(p.op !== undefined ? { op: p.op } : {}) })),
  notWords: t('BAD_REQUEST', (p: { what: string }) => `${p.what} is a whole number of 32-bit words`, none),
  valuePerOffset: t('BAD_REQUEST', () => 'one value per offset'),
  lengthPerIova: t('BAD_REQUEST', () => 'one length per iova'),
  emptyItem: t('BAD_REQUEST', () => 'an item length is at least 1'),
  streamItems: t('BAD_REQUEST', (p: { count: number; max: number }) => `a stream request holds 1..${p.max} items`, (p) => ({ count: p.count })),
  streamTooLarge: t('PAYLOAD_TOO_LARGE', (p: { limit: number; got: number }) => `a stream frame moves at most ${p.limit} bytes (as POST .../access)`),
  writeLength: t('BAD_REQUEST', (p: { total: number; dataLength: number }) => `a write carries exactly the ${p.total} bytes its lengths say`, (p) => ({ dataLength: p.dataLength })),
  dataNotWrite: t('BAD_REQUEST', (p: { access: string }) => 'data goes with a write access'),
  sizeNotData: t('BAD_REQUEST', (p: { size: number; dataLength: number }) => 'size disagrees with the length of data'),
  emptyData: t('BAD_REQUEST', () => 'data is empty'),
  emptyMemoryWrite: t('BAD_REQUEST', () => 'a memory write takes at least one byte'),
  msmOnly: t('BAD_REQUEST', (p: { what: string; smmu: string; family: string }) => `${p.what} is an msm operation; ${p.smmu} is ${p.family}`, (p) => ({ smmu: p.smmu, family: p.family })),
  unknownCommand: t('BAD_REQUEST', (p: { op: unknown }) => `unknown command ${String(p.op)}`, none),

  // ---- hardware: names, register windows, stalls
  noSmmu: t('NOT_FOUND', (p: { smmu: string }) => `no SMMU named ${p.smmu}`),
  noDevice: t('NOT_FOUND', (p: { device: string }) => `no device named ${p.device}`),
  noContext: t('NOT_FOUND', (p: { smmu: string; context: string }) => `SMMU ${p.smmu} has no context ${p.context}`, (p) => ({ context: p.context })),
  noMidRoute: t('NOT_FOUND', (p: { mid: number }) => `MID ${p.mid} routes to no bank`),
  offsetOutsideWindow: t('BAD_REQUEST', (p: { offset: number; window: string }) => `offset ${hex(p.offset)}: outside the ${p.window} register window`, (p) => ({ offset: hex(p.offset) })),
  offsetUnaligned: t('BAD_REQUEST', (p: { offset: number }) => `offset ${hex(p.offset)}: registers are 32-bit and 4-byte aligned`, (p) => ({ offset: hex(p.offset) })),
  offsetUnknown: t('BAD_REQUEST', (p: { offset: number }) => `offset ${hex(p.offset)}: reserved or unknown register`, (p) => ({ offset: hex(p.offset) })),
  offsetNoBank: t('BAD_REQUEST', (p: { offset: number; banks: number }) => `offset ${hex(p.offset)}: no context bank ${p.offset >>> 12} (this SMMU has ${p.banks})`, (p) => ({ offset: hex(p.offset) })),
  noStall: t('NOT_FOUND', (p: { stall: string; here?: boolean }) => `no stalled transaction ${p.stall}${p.here ? ' on this context' : ''}`, (p) => ({ stall: p.stall })),
  stallRoom: t(
    'LIMIT',
    (p: { context: string | number; limit: number; stalled: number; items: number }) =>
      `context ${p.context} is in stall mode with room for ${Math.max(0, p.limit - p.stalled)} more stalled transactions; the request has ${p.items}`,
    (p) => ({ limit: p.limit, stalled: p.stalled, items: p.items }),
  ),
  ramBudgetSession: t('LIMIT', (p: { limit: number; held: number; bytes: number }) => `the session holds ${p.held} bytes of emulated RAM and may hold at most ${p.limit} (--max-ram-per-session): this write could add ${p.bytes}`, (p) => ({ scope: 'session', limit: p.limit, held: p.held, bytes: p.bytes })),
  ramBudgetDaemon: t('LIMIT', (p: { limit: number; held: number; bytes: number }) => `the daemon's sessions hold ${p.held} bytes of emulated RAM and may hold at most ${p.limit} (--max-ram): this write could add ${p.bytes}`, (p) => ({ scope: 'daemon', limit: p.limit, held: p.held, bytes: p.bytes })),
  stallsFull: t('LIMIT', (p: { context: string | number; limit: number; stalled: number }) => `context ${p.context} already holds ${p.stalled} stalled transactions`, (p) => ({ limit: p.limit })),
  notGart: t('DOMAIN_TYPE', (p: { smmu: string }) => `${p.smmu} is not a GART`, none),
  gartAperture: t('DOMAIN_TYPE', (p: { smmu: string }) => `the domain's entries are not for GART ${p.smmu}'s aperture`),
  gartBusy: t('DEVICE_BUSY', (p: { smmu: string; device: string | null; domain: string | null }) => `GART ${p.smmu} has another active domain (${p.domain})`, (p) => ({ device: p.device, domain: p.domain })),

  // ---- the IOMMU API
  noDomain: t('NOT_FOUND', (p: { domain: string }) => `no domain ${p.domain}`),
  tooManyDomains: t('LIMIT', (p: { limit: number }) => `a session holds at most ${p.limit} domains`),
  pgsizeUnknown: t('BAD_REQUEST', (p: { size: number; pgsizes: number[] }) => `page size ${p.size} is not one of 4K, 64K, 1M, 16M`, (p) => ({ pgsizes: p.pgsizes })),
  pgsizeUnsupported: t('BAD_REQUEST', (p: { size: number; pgsizes: number[]; family: string }) => `page size ${p.size} is not one the ${p.family} family supports`, (p) => ({ pgsizes: p.pgsizes, family: p.family })),
  pgsizesEmpty: t('BAD_REQUEST', (p: { pgsizes: number[] }) => 'pgsizes must name at least one page size'),
  domainAttached: t('DOMAIN_ATTACHED', (p: { domain: string; attached: Array<string | null> }) => `domain ${p.domain} still has devices attached`, (p) => ({ attached: p.attached })),
  familyMismatch: t(
    'DOMAIN_TYPE',
    (p: { domain: string; device: string; domainFamily: string; deviceFamily: string }) => `domain ${p.domain} is ${p.domainFamily}; device ${p.device} sits behind a ${p.deviceFamily} IOMMU`,
  ),
  deviceBusy: t('DEVICE_BUSY', (p: { device: string; domain: string }) => `device ${p.device} is attached to ${p.domain}`),
  dmaDomainTaken: t('DOMAIN_TYPE', (p: { domain: string }) => `DMA domain ${p.domain} belongs to another device`),
  oneDevicePerDomain: t('DEVICE_BUSY', (p: { family: string; device: string; domain: string; attached: string | null }) => `a ${p.family} domain takes one device: ${p.domain} holds ${p.attached}`, (p) => ({ device: p.device, domain: p.domain, attached: p.attached })),
  notAttached: t('NOT_ATTACHED', (p: { device: string; domain: string }) => `device ${p.device} is not attached to ${p.domain}`),
  dmaManaged: t('DOMAIN_TYPE', (p: { domain: string }) => `domain ${p.domain} is managed by the DMA API`),
  tooManyPages: t('LIMIT', (p: { limit: number }) => `a session maps at most ${p.limit} pages`),
  notMapped: t('NOT_MAPPED', (p: { iova: number }) => `iova ${hex(p.iova)} is not mapped`),

  // ---- the DMA API
  dmaUnmanaged: t('DOMAIN_TYPE', (p: { device: string; domain: string }) => `device ${p.device} is attached to unmanaged domain ${p.domain}: the DMA API needs its DMA domain`),
  directUnmanaged: t('DOMAIN_TYPE', (p: { device: string; domain: string }) => `device ${p.device} is attached to unmanaged domain ${p.domain}: detach it before direct-mode DMA`),
  dmaLimitRange: t('OUT_OF_RANGE', (p: { dmaLimit: number }) => 'dmaLimit must be 0x1fff .. 0xffffffff'),
  dmaModeBusy: t('DEVICE_BUSY', (p: { device: string; mappings: number }) => `device ${p.device} has ${p.mappings} live DMA mappings: unmap them before changing the DMA mode`),
  noSegments: t('BAD_REQUEST', () => 'at least one segment'),
  dmaUnknownHandle: dmaDebug('unknown-handle', (p) => `no live DMA mapping at ${p.report.dmaAddr} (never mapped, or already unmapped)`),
  dmaSizeMismatch: dmaDebug('size-mismatch', (p) => `mapping at ${p.report.dmaAddr} is ${p.report.mapped} bytes, unmap says ${p.report.size}`),
  dmaDirectionMismatch: dmaDebug('direction-mismatch', (p) => `mapping at ${p.report.dmaAddr} is ${p.report.mapped}, unmap says ${p.report.dir}`),
  dmaSyncDirection: dmaDebug('direction-mismatch', (p: { report: DmaDebugReport<'direction-mismatch'>; for: string }) => `sync for ${p.for} says ${p.report.dir}, the mapping is ${p.report.mapped}`),
  dmaSyncOutside: dmaDebug('sync-outside-mapping', (p: { report: DmaDebugReport<'sync-outside-mapping'>; start: number }) => `sync of [${hex(p.start)}, ${hex(p.start + p.report.size)}) is outside any live mapping`),
  dmaOverlap: dmaDebug(
    'overlapping-mapping',
    (p: { report: DmaDebugReport<'overlapping-mapping'>; paddr: number; size: number; other: { device: string; dmaAddr: number; dir: string } }) =>
      `[${hex(p.paddr)}, ${hex(p.paddr + p.size)}) overlaps a live ${p.other.dir} mapping of ${p.other.device} at ${hex(p.other.dmaAddr)}`,
  ),
  dmaDirectTaken: dmaDebug('overlapping-mapping', (p: { report: DmaDebugReport<'overlapping-mapping'>; device: string }) => `${p.device} already has a live direct mapping at ${p.report.dmaAddr}`),
  noBouncePool: t(
    'NO_SPACE',
    (p: { device: string; paddr: number; size: number; dmaLimit: number }) => `[${hex(p.paddr)}, +${p.size}) is above the DMA mask ${hex(p.dmaLimit)} of ${p.device} and the session has no bounce pool`,
    (p) => ({ reason: 'bounce', paddr: p.paddr, size: p.size, dmaLimit: p.dmaLimit }),
  ),
  bounceFull: t('NO_SPACE', (p: { slots: number; dmaLimit: number }) => `the bounce pool has no ${p.slots} free consecutive slots below ${hex(p.dmaLimit)}`, (p) => ({ reason: 'bounce', ...p })),
  iovaExhausted: t('NO_SPACE', (p: { pages: number; limit: number }) => `IOVA space exhausted: no ${p.pages} free pages below ${hex(p.limit)}`, (p) => ({ pages: p.pages })),
  noIovaRange: t('NOT_FOUND', (p: { iova: number }) => `no IOVA range at ${hex(p.iova)}`),

  // ---- physical memory and the session's settings
  bufferSize: t('OUT_OF_RANGE', (p: { size: number }) => 'size must be 1 .. 2^32 bytes'),
  bufferAlign: t('BAD_REQUEST', (p: { align: number }) => 'align must be a power of two ≥ 4096'),
  noPool: t('NOT_FOUND', (p: { pool: string }) => `no pool named ${p.pool}`),
  poolsFull: t('NO_SPACE', (p: { size: number; align: number }) => `no pool has ${p.size} bytes free at ${p.align}-byte alignment`),
  noBuffer: t('NOT_FOUND', (p: { paddr: number }) => `no buffer at ${hex(p.paddr)}`),
  pageUnaligned: t('UNALIGNED', (p: { iova: number; paddr?: number; size: number; minPageSize: number }) => `${p.paddr === undefined ? 'iova and size' : 'iova, paddr and size'} must be multiples of the smallest page size ${hex(p.minPageSize)}`),
  mapRange: t('OUT_OF_RANGE', (p: { iova: number; paddr: number; size: number }) => 'iova + size and paddr + size must lie within the 32-bit space, size > 0'),
  protNoAccess: t('BAD_REQUEST', (p: { prot: number }) => 'prot must include read or write'),
  alreadyMapped: t('ALREADY_MAPPED', (p: { iova: number }) => `iova ${hex(p.iova)} is already mapped`),
  nothingMapped: t('NOT_MAPPED', (p: { iova: number; size: number }) => `nothing is mapped in [${hex(p.iova)}, ${hex(p.iova + p.size)})`),
  partialUnmap: t('PARTIAL_UNMAP', (p: { iova: number; pageSize: number }) => `the range cuts a ${p.pageSize >>> 10} KiB page at ${hex(p.iova)}`),
  gartOutsideAperture: t('OUT_OF_RANGE', (p: { iova: number; size: number; aperture: { base: number; size: number } }) => `[${hex(p.iova)}, ${hex(p.iova + p.size)}) is outside the GART aperture`),
  gartPaLimit: t('OUT_OF_RANGE', (p: { paddr: number; size: number }) => 'GART entries hold PA bits 30:12: paddr + size must stay below 2 GiB'),
  pagetablePoolFull: t('NO_SPACE', (p: { what: string; pool: { base: number; size: number; used: number } }) => `page-table pool exhausted: no room for an ${p.what} table`, (p) => ({ pool: p.pool })),
  badCpuCache: t('BAD_REQUEST', (p: { field: 'lineSize' | 'lines' | 'coherent'; coherent?: string[] }) => `cpuCache: ${CPU_CACHE_RULES[p.field]}`, (p) => ({ field: `cpuCache.${p.field}`, ...(p.field === 'coherent' ? { coherent: p.coherent } : {}) })),
  bounceUnaligned: t('UNALIGNED', (p: { paddr: number; size: number; slot: number }) => `bounce: paddr and size must be multiples of ${p.slot}`, (p) => ({ field: 'bounce', paddr: p.paddr, size: p.size })),
  bounceNotRam: t('OUT_OF_RANGE', (p: { paddr: number; size: number; max: number }) => `bounce: [${hex(p.paddr)}, +${p.size}) must be RAM, 1 .. ${p.max} bytes`, (p) => ({ field: 'bounce', paddr: p.paddr, size: p.size })),
  bounceOverPagetables: t('BAD_REQUEST', (p: { base: number; size: number }) => 'bounce: the pool overlaps the page-table pool', (p) => ({ field: 'bounce', pagetablePool: { base: hex(p.base), size: p.size } })),
  tooManySessions: t('LIMIT', (p: { limit: number }) => `the daemon holds at most ${p.limit} sessions`),

  // ---- profiles (inline topologies): the semantic checks zod's shape check leaves
  profileNoSmmu: t('BAD_REQUEST', () => 'a profile needs at least one SMMU'),
  profileSmmuTwice: t('BAD_REQUEST', (p: { smmu: string }) => `duplicate SMMU name ${p.smmu}`),
  profileContextDigit: t('BAD_REQUEST', (p: { context: string }) => `context name ${p.context} must not start with a digit`),
  profileContextTwice: t('BAD_REQUEST', (p: { context: string }) => `duplicate context name ${p.context}`),
  profileApertureNotGart: t('BAD_REQUEST', (p: { smmu: string }) => `SMMU ${p.smmu}: only a gart has an aperture`),
  profileBusErrorNotOmap: t('BAD_REQUEST', (p: { smmu: string }) => `SMMU ${p.smmu}: busErrorBack is an omap setting`),
  profileNoRam: t('BAD_REQUEST', () => 'a profile needs RAM'),
  profileRegion: t('BAD_REQUEST', (p: { region: string }) => `memory region ${p.region} must be 4 KiB aligned, non-empty and inside 32-bit space`, none),
  profileRegionsOverlap: t('BAD_REQUEST', (p: { a: string; b: string }) => `memory regions ${p.a} and ${p.b} overlap`, none),
  profilePagetablePool: t('BAD_REQUEST', () => 'pagetablePool must be 16 KiB aligned, at least 16 KiB, and inside one memory region'),
  profileBanksRequired: t('BAD_REQUEST', (p: { smmu: string }) => `SMMU ${p.smmu}: banks is required for msm`),
  profileMsmBase: t('BAD_REQUEST', (p: { smmu: string }) => `SMMU ${p.smmu}: base must be 1 MiB aligned in 32-bit space`, none),
  profileMsmBanks: t('BAD_REQUEST', (p: { smmu: string }) => `SMMU ${p.smmu}: banks must be 1..64`, none),
  profileBankRange: t('BAD_REQUEST', (p: { context: string; index: number }) => `context ${p.context}: bank index ${p.index} out of range`, (p) => ({ context: p.context })),
  profileBankTwice: t('BAD_REQUEST', (p: { smmu: string; bank: number }) => `SMMU ${p.smmu}: bank ${p.bank} named twice`, none),
  profileMsmMid: t('BAD_REQUEST', (p: { context: string; mid: number }) => `context ${p.context}: MID ${p.mid} out of range 0..255`, none),
  profileMidTwice: t('BAD_REQUEST', (p: { smmu: string; mid: number }) => `SMMU ${p.smmu}: MID ${p.mid} routes to more than one bank`, (p) => ({ mid: p.mid })),
  profileOneBank: t('BAD_REQUEST', (p: { smmu: string; family: string }) => `SMMU ${p.smmu}: a ${p.family} instance has one bank`, (p) => ({ smmu: p.smmu })),
  profileWindowBase: t('BAD_REQUEST', (p: { smmu: string; window: number }) => `SMMU ${p.smmu}: base must be ${hex(p.window)} aligned in 32-bit space`, (p) => ({ smmu: p.smmu })),
  profileContextIndex0: t('BAD_REQUEST', (p: { context: string; family: string }) => `context ${p.context}: a ${p.family} context has index 0`, (p) => ({ context: p.context })),
  profileMid: t('BAD_REQUEST', (p: { context: string; mid: number }) => `context ${p.context}: MID ${p.mid} out of range`, (p) => ({ context: p.context })),
  profileOmapContexts: t('BAD_REQUEST', (p: { smmu: string }) => `SMMU ${p.smmu}: an omap MMU has exactly one context`),
  profileGartMids: t('BAD_REQUEST', (p: { context: string }) => `context ${p.context}: gart mids are [read client, write client]`),
  profileGartNoAperture: t('BAD_REQUEST', (p: { smmu: string }) => `SMMU ${p.smmu}: a gart needs an aperture`),
  profileGartAperture: t('BAD_REQUEST', (p: { smmu: string }) => `SMMU ${p.smmu}: the aperture must be 4 KiB aligned, non-empty, at most 1 GiB and inside 32-bit space`),

  // ---- traces, journals and snapshots
  traceLineNotJson: t('BAD_REQUEST', (p: { line: number }) => `trace line ${p.line} is not JSON`),
  traceNoHeader: t('BAD_REQUEST', (p: { format: string }) => `a trace starts with a {"format":"${p.format}","version":N,...} header line`, none),
  traceTooNew: t('BAD_REQUEST', (p: { version: number; supported: number }) => `trace format version ${p.version} is newer than this daemon's (${p.supported})`),
  traceRecordNotObject: t('BAD_REQUEST', () => 'a trace record is a JSON object'),
  traceRecordUnknown: t('BAD_REQUEST', () => 'a trace record holds a cmd, a snapshot, a token or unrecorded'),
  traceRecordMalformed: t('BAD_REQUEST', (p: { record: number }) => `trace record ${p.record} is malformed`),
  traceNotStorable: t('BAD_REQUEST', (p: { reason: string }) => `the trace cannot be stored: ${p.reason}`, none),
  traceMemoryFull: t(
    'NO_SPACE',
    (p: { limit: number }) => `this session's state alone is over the ${p.limit}-byte in-memory trace budget: start iommud with a larger --trace-memory, or with --data-dir for traces of any size`,
    (p) => ({ reason: 'trace-memory', limit: p.limit }),
  ),
  revisionFalls: t('BAD_REQUEST', (p: { revision: number; current: number }) => `revision only rises: ${p.revision} follows ${p.current}`),
  seqFalls: t('BAD_REQUEST', (p: { seq: number; current: number }) => `event seq only rises: ${p.seq} follows ${p.current}`),
  snapshotMismatch: t('BAD_REQUEST', (p: { field: string }) => `invalid snapshot: ${p.field} does not match this session's SoC`),
  notDurable: t('UNAVAILABLE', (p: { reason: string }) => `the change could not be made durable and is refused: ${p.reason}`, none),
  persistenceFailed: t('UNAVAILABLE', (p: { reason: string }) => `persistence failed (${p.reason}): mutations are refused, reads still work`, none),
  journalCreate: t('UNAVAILABLE', (p: { reason: string }) => `cannot create the session's journal: ${p.reason}`, none),
  journalWrite: t('UNAVAILABLE', (p: { reason: string }) => `cannot write the session's journal: ${p.reason}`, none),
  journalRemove: t('UNAVAILABLE', (p: { reason: string }) => `cannot remove the session's journal (${p.reason}): the session is kept`, none),
};

const CPU_CACHE_RULES = { lineSize: 'lineSize must be 32 or 64', lines: 'lines must be an integer 1 .. 65536', coherent: 'coherent names a device this profile does not have' };

export type ErrorName = keyof typeof ERRORS;
export type ErrorParams<K extends ErrorName> = Parameters<(typeof ERRORS)[K]['message']>[0];
/** A template without required parameters may be called with none. */
type Args<K extends ErrorName> = Record<never, never> extends ErrorParams<K> ? [params?: ErrorParams<K>] : [params: ErrorParams<K>];

/** The refusal a template describes (to throw, to hand to a callback, or to answer on a socket). */
export function refusal<K extends ErrorName>(name: K, ...[params]: Args<K>): IommuError {
  const tpl = ERRORS[name] as Template<object>;
  const p = params ?? {};
  return new IommuError(tpl.code, tpl.message(p), tpl.details(p));
}

export function fail<K extends ErrorName>(name: K, ...args: Args<K>): never {
  throw refusal(name, ...args);
}

/** Detail fields that hold addresses: given as lower-case hex strings, as every address in the API (API.md). */
const ADDRESS_FIELDS = new Set(['iova', 'paddr', 'dmaAddr', 'dmaLimit', 'far', 'ttbr0']);

function addressesAsHex(details: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | null = null;
  for (const k in details) {
    const v = details[k];
    if (typeof v === 'number' && ADDRESS_FIELDS.has(k) && Number.isFinite(v)) (out ??= { ...details })[k] = hex(v);
  }
  return out ?? details;
}


const HEX1 = Array.from({ length: 256 }, (_, i) => i.toString(16));
const HEX2 = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
/** hex() of values below 0x100 (FSYNR0/1, small flags: several per fault), made once instead of a string per call. */
const HEX_SMALL = HEX1.map((h) => '0x' + h);

/**
 * Lower-case hex with 0x, not zero-padded: the API's one spelling of addresses and register values. Built from
 * byte tables: Number#toString(16) costs ~9× more, and every fault, event and view formats several of these.
 */
export function hex(n: number): string {
  if (n >>> 0 !== n) return '0x' + Math.trunc(n).toString(16);
  if (n < 0x100) return HEX_SMALL[n]!;
  if (n < 0x10000) return '0x' + HEX1[n >>> 8]! + HEX2[n & 255]!;
  // Addresses repeat (a driver maps and unmaps the same buffers): the last one formatted per slot is reused.
  const slot = ((n >>> 12) ^ (n >>> 20)) & (HEX_SLOTS - 1);
  if (HEX_N[slot] === n) return HEX_S[slot]!;
  const s =
    n < 0x1000000
      ? '0x' + HEX1[n >>> 16]! + HEX2[(n >>> 8) & 255]! + HEX2[n & 255]!
      : '0x' + HEX1[n >>> 24]! + HEX2[(n >>> 16) & 255]! + HEX2[(n >>> 8) & 255]! + HEX2[n & 255]!;
  HEX_N[slot] = n;
  HEX_S[slot] = s;
  return s;
}

/** hex()'s cache of addresses ≥ 0x10000, direct-mapped by page number: value and string per slot. */
const HEX_SLOTS = 256;
const HEX_N = new Float64Array(HEX_SLOTS).fill(-1);
const HEX_S = new Array<string>(HEX_SLOTS).fill('');
