/**
 * One simulated SoC shared by many users: the hardware, the IOMMU and DMA APIs over it, the event stream,
 * tokens, the revision counter, and the record of its commands (trace, journal). The only place that knows all
 * of the layers below.
 */
import { createHash, hash as cryptoHash, randomFillSync } from 'node:crypto';
import { existsSync, readdirSync, unlinkSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_NODE_ID, isNodeId } from '../cluster/node.js';
import { IommuError, fail, refusal } from '../errors.js';
import { DmaApi } from '../dma/dma.js';
import { EventBus, isoNow } from '../events/bus.js';
import { validateProfile, type Profile } from '../hw/profile.js';
import { Soc } from '../hw/soc.js';
import type { TlbPolicy } from '../hw/tlb.js';
import { Iommu, type IommuLimits } from '../iommu/iommu.js';
import { BufferPools } from '../memory/pools.js';
import { CHUNK_SIZE } from '../memory/phys.js';
import { setupNonCoherent, type BounceOption, type CpuCacheOption } from './noncoherent.js';
import { COHERENCY_CHECKS, type CpuCache, type CpuCacheConfig } from '../memory/cache.js';
import type { BouncePool } from '../dma/swiotlb.js';
import { z } from 'zod';
import { TraceHeader as TraceHeaderSchema } from '../api/schemas.js';
import { OP_MMIO_READ, OP_MMIO_WRITE } from '../api/stream.js';
import { checkRamBudget, execute, shapeError, type Command } from './commands.js';
import { SessionSnapshotSchema } from './snapshot.js';
import { checkDataDir, encodeRecord, Journal, readJournal, writeFileAtomic } from './journal.js';
import { JsonLines } from './lines.js';
import { SessionViews } from './views.js';

export type Role = 'observer' | 'operator' | 'owner';
const ROLE_RANK: Record<Role, number> = { observer: 0, operator: 1, owner: 2 };

export interface TokenInfo {
  /** The token's public part (before the '.'): what it is looked up by. Absent on tokens of older journals. */
  id?: string;
  role: Role;
  label: string | null;
  /** SHA-256 of the whole token, hex: the token itself is never kept. */
  hash: string;
}

export interface Actor {
  role: Role;
  label: string | null;
}

export interface SessionOptions {
  id: string;
  name: string;
  profile: Profile;
  tlbEntries?: number;
  tlbPolicy?: TlbPolicy;
  stallTimeoutMs?: number;
  eventRetain?: number;
  limits?: Partial<SessionLimits>;
  createdAt?: string;
  /** A CPU data cache (API.md v1.1): without it the session is coherent, as in v1. */
  cpuCache?: CpuCacheOption;
  /** A swiotlb-style bounce pool inside RAM. */
  bounce?: BounceOption;
  /** Bytes of trace kept in memory while the session has no journal (default DEFAULT_TRACE_MEMORY; 0: none). */
  traceMemory?: number;
  /** Budget of emulated RAM written (bytes held, in 64 KiB chunks) for the session and the daemon's ledger. */
  ram?: { perSession: number; ledger: RamLedger };
}

/**
 * Emulated RAM held by a daemon's sessions (64 KiB chunks, allocated on first write and kept until the session
 * goes), against the daemon's budget (--max-ram).
 */
export class RamLedger {
  held = 0;
  constructor(readonly limit: number) {}
}

/** Per-session default of --max-ram-per-session: every built-in profile's RAM fits (the largest is 1 GiB). */
export const DEFAULT_MAX_RAM_PER_SESSION = 1024 * 1024 * 1024;

/** Quotas of one session: the IOMMU's, and the items one command may carry. */
export interface SessionLimits extends IommuLimits {
  /** Items per batch (maps, accesses, register ops): past it PAYLOAD_TOO_LARGE. */
  maxBatchOps: number;
}

/** The format of journals and traces; a newer one is refused rather than misread. */
export const TRACE_FORMAT = 'iommud-trace';
export const TRACE_VERSION = 1;

/** What creates a session: the first line of its journal and of its trace. */
export interface TraceHeader {
  format: typeof TRACE_FORMAT;
  version: number;
  /** Journal generation: a snapshot of generation G covers every record of journals before G. */
  gen?: number;
  /**
   * In a snapshot: the journal bytes it holds (generation and length). If the journal could not be restarted
   * after the snapshot was written, later records follow those bytes in the same file, and restore applies them.
   */
  covers?: { gen: number; bytes: number };
  session: {
    id: string;
    name: string;
    profile: Profile;
    tlbEntries: number;
    tlbPolicy: TlbPolicy;
    stallTimeoutMs: number;
    createdAt: string;
    cpuCache?: CpuCacheConfig;
    bounce?: BounceOption;
  };
}

/**
 * A trace as POST /v1/sessions takes it (JSON lines, or the records as an array): the header held to the bounds of
 * a session-creation body; the records are checked as they replay (each command by execute()'s gate).
 */
export function parseTrace(trace: string | readonly unknown[]): { header: z.output<typeof TraceHeaderSchema>; records: unknown[] } {
  let records: unknown[];
  if (typeof trace === 'string') {
    const lines = trace.split('\n').filter((l) => l.trim() !== '');
    records = lines.map((l, i) => {
      try {
        return JSON.parse(l) as unknown;
      } catch {
        fail('traceLineNotJson', { line: i + 1 });
      }
    });
  } else records = [...trace];
  const first = records[0] as { format?: unknown; version?: unknown } | null | undefined;
  if (typeof first !== 'object' || first === null || first.format !== TRACE_FORMAT || typeof first.version !== 'number') {
    fail('traceNoHeader', { format: TRACE_FORMAT });
  }
  if (first.version > TRACE_VERSION) {
    fail('traceTooNew', { version: first.version, supported: TRACE_VERSION });
  }
  const header = TraceHeaderSchema.safeParse(first);
  if (!header.success) throw shapeError('header', header.error);
  return { header: header.data, records: records.slice(1) };
}

/** One acknowledged command, as the journal and the trace hold it. */
export interface CommandRecord {
  seq: number;
  time: string;
  by: Actor | null;
  cmd: Command;
  /** A command that was refused but emitted events (DMA-debug): replayed for its events only. */
  refused?: true;
  /** What moved since the previous record without a record of its own (see Unrecorded). */
  unrecorded?: Unrecorded;
}

/**
 * What changed between two records without a command record of its own: the revision reached by translations
 * that changed nothing but TLB state (they are not recorded), the event seq past events withdrawn with a change
 * a journal failure undid (numbers are never given twice), and TLBs emptied by a restore or replay. Carried by
 * the next record, or alone at the end of a trace or journal.
 */
export interface Unrecorded {
  revision?: number;
  seq?: number;
  tlbReset?: true;
}
const UnrecordedSchema = z.strictObject({ revision: z.number().int().nonnegative().optional(), seq: z.number().int().nonnegative().optional(), tlbReset: z.literal(true).optional() });

/** The counters at the end of a trace or journal, when they moved after its last record. */
interface UnrecordedRecord {
  unrecorded: Unrecorded;
}

/**
 * In a journal only: replies may have named revisions up to `answered` (translations that get no record still
 * raise revision, API.md), written before the first such reply past the previous bound, REVISION_BLOCK ahead. A
 * restore continues at or above it, so the revision never comes back below one a client saw; a later standalone
 * `unrecorded` record (a graceful stop's) gives the exact revision instead.
 */
interface AnsweredRecord {
  answered: number;
}
/** Revisions reserved per `answered` record: one journal write per this many unrecorded translations. */
const REVISION_BLOCK = 1024;

/** A whole session state: a trace or journal may start from one instead of from nothing. */
interface SnapshotRecord {
  snapshot: SessionSnapshot;
}

export interface SessionSnapshot {
  revision: number;
  faultCounts: Array<[string, number]>;
  tokens: Array<{ id?: string; hash: string; role: Role; label: string | null }>;
  soc: ReturnType<Soc['snapshot']>;
  iommu: ReturnType<Iommu['snapshot']>;
  dma: ReturnType<DmaApi['snapshot']>;
  pools: ReturnType<BufferPools['snapshot']>;
  bus: ReturnType<EventBus['snapshot']>;
  cache?: ReturnType<CpuCache['snapshot']>;
  bounce?: ReturnType<BouncePool['snapshot']>;
  coherency?: Array<[string, number]>;
}

/**
 * A token as a session holds it: what it grants, its digest as lower-case hex (compared in constant time; null
 * for a stored hash that is not one, which matches nothing) and the text that last matched the digest: a client
 * presents the same token on every request, and a repeat is compared with it in constant time instead of hashing
 * again. Held in memory only, like the request.
 */
interface HeldToken {
  info: TokenInfo;
  digest: string | null;
  verified: string | undefined;
}

/** A token as the journal holds it: its digest, never the token itself. */
interface TokenRecord {
  token: { id?: string; hash: string; role: Role; label: string | null };
}

const SYSTEM: Actor = { role: 'owner', label: 'iommud' };
/** The counts of a session that has counted nothing yet. */
const NO_COUNTS: ReadonlyMap<string, number> = new Map();

/** A session's hardware and the APIs over it (Session.buildHw). */
interface SessionHw {
  soc: Soc;
  iommu: Iommu;
  pools: BufferPools;
  dma: DmaApi;
}
/** Who made a recorded change (events carry it): a role and a label, or nobody. */
const ActorSchema = z.strictObject({ role: z.enum(['observer', 'operator', 'owner']), label: z.string().max(128).nullable() }).nullable();
const DONE = Promise.resolve();
/**
 * Bytes of trace a session without a journal keeps in memory (--trace-memory), counted as the JSON lines it
 * holds. Past it the trace restarts from a snapshot of the state, as a journal's compaction does; a state whose
 * snapshot alone is over the budget cannot be exported (NO_SPACE). A session with a journal exports from it.
 */
export const DEFAULT_TRACE_MEMORY = 64 * 1024 * 1024;

/**
 * Device-side commands that, when they emit no event, write no RAM and raise no fault, changed only TLB contents
 * and counters: state no snapshot holds either (a restore or a replay starts with empty TLBs, as after a reset).
 * They get no record; only the revision they reach is kept (Unrecorded).
 */
function onDataPath(soc: Soc, cmd: Command): boolean {
  if (typeof cmd !== 'object' || cmd === null) return false; // execute() refuses it
  if (cmd.op === 'master-access') return true;
  if (cmd.op !== 'access' && cmd.op !== 'access-batch' && (cmd.op !== 'stream' || cmd.sop === OP_MMIO_READ || cmd.sop === OP_MMIO_WRITE)) return false;
  // An OMAP walker's fill moves LOCK.VICTIM, a register a snapshot holds: those translations are recorded.
  const smmu = soc.devices.get(cmd.device)?.smmu;
  return smmu !== undefined && smmu.family !== 'omap';
}

/** Actors made by frozenActor(): exactly `{ role, label }`, unchangeable. */
const FROZEN_ACTORS = new WeakSet<Actor>();

/** An actor that commands and events can hold as it is (the server makes one per token, not one per request). */
export function frozenActor(role: Role, label: string | null): Actor {
  const a = Object.freeze({ role, label });
  FROZEN_ACTORS.add(a);
  return a;
}

/** The last actor found in FROZEN_ACTORS: a client's commands come with the same one (no WeakSet lookup then). */
let lastFrozen: Actor | null = null;

/** The actor events carry: `{ role, label }` and nothing else of what the caller passed (copied unless frozenActor's). */
function actorOf(a: Actor | null): Actor | null {
  if (!a || a === lastFrozen) return a;
  if (!FROZEN_ACTORS.has(a)) return { role: a.role, label: a.label };
  lastFrozen = a;
  return a;
}

/** Faults taken by every context (FSR and friends change only with one, with or without an event). */
function faultCount(soc: Soc): number {
  let n = 0;
  for (const smmu of soc.smmus) for (const b of smmu.banks) n += b.faults;
  return n;
}

/**
 * Random bytes for ids and tokens, taken from a pool the CSPRNG refills 4 KiB at a time (one crypto call per ~100
 * sessions instead of three per session); every byte is used once. They are encoded straight from the pool: no
 * Buffer view per id.
 */
const RANDOM_POOL = Buffer.alloc(4096);
let randomUsed = RANDOM_POOL.length;

function randomText(n: number, encoding: 'hex' | 'base64url'): string {
  if (randomUsed + n > RANDOM_POOL.length) {
    randomFillSync(RANDOM_POOL);
    randomUsed = 0;
  }
  randomUsed += n;
  return RANDOM_POOL.toString(encoding, randomUsed - n, randomUsed);
}

/** a === b in time that depends on the length only (tokens and digests have one length: it tells nothing). */
export function sameText(a: string | undefined, b: string): boolean {
  if (a === undefined || a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/**
 * SHA-256 of a token as lower-case hex: what journals and snapshots keep and what authentication compares. The
 * one-shot hash is ~6x faster than createHash, and hex text ~4x cheaper than a Buffer (an ArrayBuffer each).
 */
export function hashToken(token: string): string {
  return typeof cryptoHash === 'function' ? cryptoHash('sha256', token, 'hex') : createHash('sha256').update(token).digest('hex');
}

/** A journal write failed: the change is refused (and undone), as 503. */
function notDurable(e: unknown): never {
  if (e instanceof IommuError) throw e;
  fail('notDurable', { reason: (e as Error).message });
}

/** A trace line for a journal record: commands and starting states (tokens never leave the daemon). */
function traceLine(r: unknown): string[] {
  if ((r as CommandRecord).cmd || (r as UnrecordedRecord).unrecorded) return [JSON.stringify(r)];
  if ((r as SnapshotRecord).snapshot) return [JSON.stringify({ snapshot: { ...(r as SnapshotRecord).snapshot, tokens: [] } })];
  return [];
}

/** What a session's files hold: its header, its snapshot and the journal records that come after it. */
export interface SessionFiles {
  header: TraceHeader;
  snap: (TraceHeader & SnapshotRecord) | null;
  tail: unknown[];
  /** Generation of the journal file. */
  gen: number;
  validBytes: number;
  torn: boolean;
  /** A journal older than a snapshot that names no covered bytes (written before `covers`): none of it applies. */
  stale: boolean;
}

/**
 * Reads a journal (its first `upTo` bytes when given) and its snapshot. Refuses, naming the file, what cannot be
 * restored exactly: a corrupt record before intact ones, a snapshot that fails its checksum or belongs to
 * another session, a journal whose generation its snapshot does not account for.
 */
export function readSessionFiles(path: string, upTo?: number): SessionFiles {
  const { records, ends, validBytes, torn } = readJournal(path, upTo);
  const header = records[0] as TraceHeader | undefined;
  if (!header || header.format !== TRACE_FORMAT) throw new Error(`${path} is not an iommud journal`);
  if (header.version > TRACE_VERSION) throw new Error(`${path} is a journal of a newer format (version ${header.version})`);
  const snapPath = path.replace(/\.journal$/, '.snap');
  let snap: (TraceHeader & SnapshotRecord) | null = null;
  if (existsSync(snapPath)) {
    const r = readJournal(snapPath);
    snap = (r.records[0] ?? null) as (TraceHeader & SnapshotRecord) | null;
    if (r.records.length !== 1 || r.torn || !snap?.snapshot || snap.session?.id !== header.session?.id) {
      throw new Error(`snapshot ${snapPath} fails its checksum or is not this session's: not restored, its files are kept`);
    }
  }
  const gen = header.gen ?? 0;
  let tail = records.slice(1);
  let stale = false;
  if (!snap) {
    if (gen > 0) throw new Error(`${path} continues generation ${gen} but its snapshot ${snapPath} is missing`);
  } else if ((snap.gen ?? 0) === gen) {
    // The journal restarted after the snapshot: all of it applies.
  } else if (snap.covers?.gen === gen) {
    const from = snap.covers.bytes;
    // tail[i] is records[i + 1], which starts where records[i] ends.
    tail = tail.filter((_, i) => ends[i]! >= from);
  } else if (!snap.covers && gen < (snap.gen ?? 0)) {
    tail = [];
    stale = true;
  } else {
    throw new Error(`${path} is of generation ${gen}, its snapshot ${snapPath} of ${snap.gen}: they do not belong together`);
  }
  return { header, snap, tail, gen, validBytes, torn, stale };
}

/** A session in the state its files hold (no journal attached). */
function sessionFromFiles(f: SessionFiles, ram?: SessionOptions['ram']): Session {
  const h = f.header.session;
  // Its journal is its trace: replaying the files keeps no copy in memory.
  const session = new Session({ ...h, profile: validateProfile(h.profile), traceMemory: 0, ...(ram ? { ram } : {}) });
  try {
    if (f.snap) session.restoreSnapshot(f.snap.snapshot);
    else session.bus.emit({ type: 'session', action: 'create', session: h.id });
    session.replay(f.tail);
  } catch (e) {
    session.close();
    throw e;
  }
  session.gen = f.stale ? (f.snap!.gen ?? 0) : f.gen;
  return session;
}

export class Session {
  readonly id: string;
  readonly name: string;
  readonly profile: Profile;
  readonly createdAt: string;
  readonly bus: EventBus;
  readonly tlbEntries: number;
  readonly tlbPolicy: TlbPolicy;
  readonly stallTimeoutMs: number;
  /** The CPU cache and bounce pool of a non-coherent session (null: coherent, as v1). */
  readonly cache: CpuCache | null;
  readonly cacheConfig: CpuCacheConfig | null;
  readonly bounce: BouncePool | null;
  readonly bounceConfig: BounceOption | null;
  /** Coherency events by check (coherencyCounts), made on first use. */
  private coherency: Map<string, number> | null = null;
  readonly maxBatchOps: number;
  /** Bytes of emulated RAM this session may hold, and the daemon's ledger its chunks count against. */
  readonly maxRam: number;
  readonly ramLedger: RamLedger;
  private ramReleased = false;
  /** SessionViews, made on first use. */
  private views: SessionViews | null = null;
  revision = 0;
  /** Faults by kind (faultCounts), made at the first fault. */
  private faults: Map<string, number> | null = null;
  /**
   * The hardware and the APIs over it, built on first use (SessionHw): a session nobody drives (a CI job's that has
   * not started yet) holds only its bus, tokens and counters, so creating one allocates a few objects, not ~100.
   * Building it changes no state: it is the SoC as after reset, as eager construction made it.
   */
  private hw: SessionHw | null = null;
  private readonly iommuLimits: Partial<IommuLimits> | undefined;
  journal: Journal | null = null;
  /**
   * Without a journal: the records that made this session, as JSON lines, for trace export (null once the state
   * alone outgrew the budget). Kept as text so that what it costs is what it holds, off the JS heap (lines.ts).
   */
  private trace: JsonLines | null = new JsonLines();
  /** Bytes of the in-memory trace: its lines (UTF-8) and their newlines. */
  get traceBytes(): number {
    return this.trace?.bytes ?? 0;
  }
  /** Budget of the in-memory trace (SessionOptions.traceMemory). */
  traceMemory: number;
  /** Revision and event seq as the last record left them: what a replay has reached at that point. */
  private recordedRevision = 0;
  /** The revision the journal says replies may have reached (AnsweredRecord); 0: none beyond the records. */
  private answeredBound = 0;
  private recordedSeq = 0;
  /** TLBs were emptied (restore, replay) since the last record: the next one says so. */
  private tlbResetPending = false;
  /** Tokens by their public id (legacy ones by their digest's hex). */
  private readonly tokens = new Map<string, HeldToken>();
  /** Rises whenever the token table changes: what authenticate() answered holds while this has not moved. */
  tokenGen = 0;
  /** Stall timers by stall id, made at the first stall. */
  private stallTimers: Map<string, NodeJS.Timeout> | null = null;
  private untap: (() => void) | null = null;
  private replaying = false;
  /** A failed journal write whose changes could not yet be undone (the files were unreadable): retried first. */
  private rollbackPending = false;
  /** Journal bytes the state was last reloaded from (where a reopened journal continues). */
  private reloadedBytes = 0;
  /** Made when something first watches the session's end (most sessions never have a socket). */
  private lifetime: AbortController | null = null;
  private closed = false;
  /** Records consumed by the last replay() (the one that failed, when it throws). */
  replayed = 0;

  constructor(opts: SessionOptions) {
    this.id = opts.id;
    this.name = opts.name;
    this.profile = opts.profile;
    this.createdAt = opts.createdAt ?? isoNow();
    this.tlbEntries = opts.tlbEntries ?? 128;
    this.tlbPolicy = opts.tlbPolicy ?? 'lru';
    this.stallTimeoutMs = opts.stallTimeoutMs ?? 30_000;
    this.maxBatchOps = opts.limits?.maxBatchOps ?? 65536;
    this.traceMemory = opts.traceMemory ?? DEFAULT_TRACE_MEMORY;
    if (this.traceMemory === 0) this.trace = null;
    this.bus = new EventBus(opts.eventRetain ?? 10_000);
    this.maxRam = opts.ram?.perSession ?? Infinity;
    this.ramLedger = opts.ram?.ledger ?? new RamLedger(Infinity);
    this.iommuLimits = opts.limits;
    this.bounceConfig = opts.bounce ? { paddr: opts.bounce.paddr, size: opts.bounce.size } : null;
    if (opts.cpuCache || opts.bounce) {
      // Non-coherent settings are checked at creation (a refusal creates nothing): this hardware is built now.
      const nc = setupNonCoherent(this.soc, this.pools, this.dma, this.bus, opts.cpuCache, opts.bounce);
      this.cache = nc.cache;
      this.cacheConfig = nc.cacheConfig;
      this.bounce = nc.bounce;
    } else {
      this.cache = null;
      this.cacheConfig = null;
      this.bounce = null;
    }
  }

  get soc(): Soc {
    return (this.hw ?? this.buildHw()).soc;
  }

  get iommu(): Iommu {
    return (this.hw ?? this.buildHw()).iommu;
  }

  get pools(): BufferPools {
    return (this.hw ?? this.buildHw()).pools;
  }

  get dma(): DmaApi {
    return (this.hw ?? this.buildHw()).dma;
  }

  /** The session's read methods: what the API answers about it, shaped (src/session/views.ts). */
  get view(): SessionViews {
    return (this.views ??= new SessionViews(this));
  }

  /** Faults by kind, for metrics. */
  get faultCounts(): ReadonlyMap<string, number> {
    return this.faults ?? NO_COUNTS;
  }

  /** Whether the session's hardware was built (first use: a command, a register read, a view of its IOMMUs). */
  get hardwareBuilt(): boolean {
    return this.hw !== null;
  }

  /**
   * TLB counters by IOMMU, for metrics. A session whose IOMMUs were never built reports its profile's IOMMUs at zero
   * instead of building them: a scrape must not give every idle session its hardware.
   */
  tlbCounters(): Array<{ smmu: string; hits: number; misses: number; evictions: number }> {
    if (!this.hw?.soc.built) return this.profile.smmus.map((m) => ({ smmu: m.name, hits: 0, misses: 0, evictions: 0 }));
    return this.hw.soc.smmus.map((m) => {
      const t = m.tlbView();
      return { smmu: m.name, hits: t.hits, misses: t.misses, evictions: t.evictions };
    });
  }

  /** Transactions through every context bank, for metrics (0 before the IOMMUs are built). */
  get transactions(): number {
    let n = 0;
    if (this.hw?.soc.built) for (const m of this.hw.soc.smmus) for (const b of m.banks) n += b.transactions;
    return n;
  }

  /** Bytes allocated from each physical pool, for metrics (the profile's pools, all free, before first use). */
  poolsUsed(): Array<{ name: string; used: number }> {
    if (!this.hw) return this.profile.memory.map((m) => ({ name: m.name, used: 0 }));
    return this.hw.pools.pools.map((p) => ({ name: p.name, used: p.used }));
  }

  /** Coherency events by check (API.md: GET /v1/sessions/:sid shows them). */
  get coherencyCounts(): Map<string, number> {
    return (this.coherency ??= new Map(COHERENCY_CHECKS.map((c) => [c, 0])));
  }

  private buildHw(): SessionHw {
    const soc = new Soc(this.profile, this.bus, { tlbEntries: this.tlbEntries, tlbPolicy: this.tlbPolicy });
    const ledger = this.ramLedger;
    soc.mem.onChunk = () => {
      ledger.held += CHUNK_SIZE;
    };
    const iommu = new Iommu(soc, this.bus, { maxDomains: 1024, maxMappedPages: 4 * 1024 * 1024, ...this.iommuLimits });
    const pools = new BufferPools(soc.mem, this.profile.memory, this.profile.pagetablePool);
    const dma = new DmaApi(iommu, this.bus);
    // Timer-driven changes go through commands too, so the journal and the trace hold them.
    dma.onTimerFlush = (device) => this.background({ op: 'dma-flush', device });
    // Armed for every stall, not only those whose ACTLR.CFEIE raises a `stall` event: no stall outlives the timeout.
    soc.env.onStall = (smmu, bank, stall) => this.armStallTimer(smmu.name, bank.index, stall);
    // Faults, coherency reports and resumes all come from this hardware: counted from when it exists.
    this.untap = this.bus.tap((ev) => {
      if (ev.type === 'fault') {
        const f = (this.faults ??= new Map());
        f.set(ev.kind as string, (f.get(ev.kind as string) ?? 0) + 1);
      } else if (ev.type === 'coherency') this.coherencyCounts.set(ev.check as string, (this.coherencyCounts.get(ev.check as string) ?? 0) + 1);
      else if (ev.type === 'resume' && this.stallTimers) {
        clearTimeout(this.stallTimers.get(ev.stall as string));
        this.stallTimers.delete(ev.stall as string);
      }
    }, ['fault', 'coherency', 'resume']);
    return (this.hw = { soc, iommu, pools, dma });
  }

  header(): TraceHeader {
    return {
      format: TRACE_FORMAT,
      version: TRACE_VERSION,
      session: {
        id: this.id,
        name: this.name,
        profile: this.profile,
        tlbEntries: this.tlbEntries,
        tlbPolicy: this.tlbPolicy,
        stallTimeoutMs: this.stallTimeoutMs,
        createdAt: this.createdAt,
        ...(this.cacheConfig ? { cpuCache: this.cacheConfig } : {}),
        ...(this.bounceConfig ? { bounce: this.bounceConfig } : {}),
      },
    };
  }

  /** A new token `<id>.<secret>`: the id is public (the lookup key), the whole token's digest is what is kept. */
  mintToken(role: Role, label: string | null = null): { token: string; durable: Promise<void> } {
    this.ensureWritable();
    const id = randomText(9, 'base64url');
    const token = `${id}.${randomText(24, 'base64url')}`;
    const digest = hashToken(token);
    const info: TokenInfo = { id, hash: digest, role, label };
    this.tokens.set(id, { info, digest, verified: undefined });
    this.tokenGen++;
    const rec: TokenRecord = { token: info };
    return { token, durable: this.journal ? this.journal.append(rec).catch(notDurable) : DONE };
  }

  /**
   * The token's role and label, or null. Looked up by its public id; the digest of what the client sent is then
   * compared in constant time with the stored one, so a wrong secret under a valid id fails without telling how
   * much of it matched.
   */
  authenticate(token: string): TokenInfo | null {
    const dot = token.indexOf('.');
    const held = dot < 0 ? undefined : this.tokens.get(token.slice(0, dot));
    if (held && sameText(held.verified, token)) return held.info;
    const digest = hashToken(token);
    if (dot < 0) {
      // A token minted before ids existed (restored from an older journal) is keyed by its digest.
      const legacy = this.tokens.get(digest);
      return legacy && legacy.info.id === undefined ? legacy.info : null;
    }
    const stored = held && held.info.id !== undefined ? held.digest : null;
    if (!stored || !sameText(stored, digest)) return null;
    held!.verified = token;
    return held!.info;
  }

  static allows(role: Role, needed: Role): boolean {
    return ROLE_RANK[role] >= ROLE_RANK[needed];
  }

  /**
   * Applies one command: events it emits carry the actor; revision rises by one only when it succeeds; the
   * record goes to the trace and the journal. Commands are synchronous, so a session's operations are serialized
   * in arrival order; `durable` resolves once the journal has the record on disk.
   */
  run(actor: Actor | null, cmd: Command): { result: unknown; durable: Promise<void> } {
    this.ensureWritable();
    const prev = this.bus.actor;
    const seqBefore = this.bus.lastSeq;
    const revBefore = this.revision;
    const dataPath = onDataPath(this.soc, cmd);
    const memBefore = dataPath ? this.soc.mem.gen : 0;
    const faultsBefore = dataPath ? faultCount(this.soc) : 0;
    this.bus.actor = actorOf(actor);
    let result: unknown;
    try {
      result = execute(this, cmd);
    } catch (e) {
      // A refusal changes nothing but may have said so on the event stream (dma-debug): it is recorded too, so
      // a replay re-emits the same events and seq keeps its numbering.
      // Nobody waits for that record (the reply is the refusal): a journal failure on it fails the journal, and
      // the rejection is handled here rather than left to end the process.
      if (e instanceof IommuError && this.bus.lastSeq !== seqBefore) {
        this.record(this.commandRecord(actor, cmd, true, revBefore, seqBefore)).catch(() => {});
      }
      throw e;
    } finally {
      this.bus.actor = prev;
    }
    this.revision++;
    if (dataPath && this.bus.lastSeq === seqBefore && this.soc.mem.gen === memBefore && faultCount(this.soc) === faultsBefore) {
      // Only TLB state changed: no record. The reply still waits for records queued before it (it saw their state).
      return { result, durable: this.journal && !this.replaying ? this.answerDurably() : DONE };
    }
    return { result, durable: this.recordCommand(actor, cmd, revBefore, seqBefore) };
  }

  /**
   * Records a command run() applied. Into the in-memory trace a map or unmap goes packed when it can (no record
   * object, no JSON text: JsonLines.pushCommand gives the same line back); anything else as commandRecord() makes it.
   */
  private recordCommand(by: Actor | null, cmd: Command, revBefore: number, seqBefore: number): Promise<void> {
    const trace = this.trace;
    if (trace && !this.journal && this.traceMemory > 0 && revBefore === this.recordedRevision && seqBefore === this.recordedSeq && !this.tlbResetPending) {
      // Nothing moved unrecorded (takeUnrecorded would give nothing): the record is seq, time, by and cmd alone.
      if (trace.pushCommand(this.bus.lastSeq, this.bus.timeSince(seqBefore), by, cmd)) {
        this.recordedRevision = this.revision;
        this.recordedSeq = this.bus.lastSeq;
        if (trace.bytes > this.traceMemory) this.traceFromState(this.traceMemory / 2);
        return DONE;
      }
    }
    return this.record(this.commandRecord(by, cmd, false, revBefore, seqBefore));
  }

  /** The record of a command run() applied (or refused with events), with what moved before it unrecorded. */
  private commandRecord(by: Actor | null, cmd: Command, refused: boolean, revBefore: number, seqBefore: number): CommandRecord {
    const rec: CommandRecord = { seq: this.bus.lastSeq, time: this.bus.timeSince(seqBefore), by, cmd };
    if (refused) rec.refused = true;
    const u = this.takeUnrecorded(revBefore, seqBefore);
    if (u) rec.unrecorded = u;
    return rec;
  }

  /**
   * What the reply to an unrecorded translation waits for: the records queued before it (it saw their state) and,
   * once its revision passes the journal's bound, a new bound REVISION_BLOCK ahead, so a restore after a crash
   * never comes back below the revision it names.
   */
  private answerDurably(): Promise<void> {
    const j = this.journal!;
    if (this.revision <= this.answeredBound) return j.flush();
    this.answeredBound = this.revision + REVISION_BLOCK;
    return j.append({ answered: this.answeredBound } satisfies AnsweredRecord);
  }

  /** The `unrecorded` field of the next record, when revision, seq or the TLBs moved since the last one. */
  private takeUnrecorded(revBefore: number, seqBefore: number): Unrecorded | undefined {
    // Built only when something moved (most records: nothing did), in the fields' order.
    let u: Unrecorded | undefined;
    if (revBefore !== this.recordedRevision) u = { revision: revBefore };
    if (seqBefore !== this.recordedSeq) (u ??= {}).seq = seqBefore;
    if (this.tlbResetPending) (u ??= {}).tlbReset = true;
    this.recordedRevision = this.revision;
    this.recordedSeq = this.bus.lastSeq;
    this.tlbResetPending = false;
    return u;
  }

  /** The record a trace or journal ends with when revision or seq moved after its last record. */
  trailer(): UnrecordedRecord[] {
    const u: Unrecorded = {
      ...(this.revision !== this.recordedRevision ? { revision: this.revision } : {}),
      ...(this.bus.lastSeq !== this.recordedSeq ? { seq: this.bus.lastSeq } : {}),
    };
    return Object.keys(u).length ? [{ unrecorded: u }] : [];
  }

  /**
   * At a graceful stop: revision and seq moved after the last record (translations, withdrawn events), so the
   * journal ends saying where they stand, for the restart to continue there. A journal that failed is retried.
   */
  async writeTrailer(): Promise<void> {
    if (!this.journal) return;
    try {
      this.ensureWritable();
    } catch {
      return; // Still failing: a restart continues from the last record.
    }
    const trailer = this.trailer();
    // Revisions reserved ahead were not all answered: the trailer gives the exact one (it also ends the bound).
    if (trailer.length === 0 && this.answeredBound > this.revision) trailer.push({ unrecorded: { revision: this.revision } });
    for (const r of trailer) await this.journal.append(r).catch(() => {});
  }

  /** Revision, seq and TLBs as a record says they stood before it (or at the end of a trace). */
  private applyUnrecorded(u: unknown): void {
    const p = UnrecordedSchema.safeParse(u);
    if (!p.success) throw shapeError('unrecorded', p.error);
    const { revision, seq, tlbReset } = p.data;
    if (revision !== undefined && revision < this.revision) fail('revisionFalls', { revision, current: this.revision });
    if (seq !== undefined && seq < this.bus.lastSeq) fail('seqFalls', { seq, current: this.bus.lastSeq });
    if (tlbReset) this.resetTlbs();
    if (revision !== undefined) this.revision = revision;
    if (seq !== undefined) this.bus.advanceTo(seq);
  }

  /** Empties every TLB and its counters, as a reset does; the next record says so, so a replay does it there too. */
  resetTlbs(): void {
    // IOMMUs not built yet hold nothing to reset.
    if (this.hw?.soc.built) for (const smmu of this.hw.soc.smmus) smmu.resetTlb();
    this.tlbResetPending = true;
  }

  /** Appends a record to the journal (or the in-memory trace); resolves once durable. */
  private record(rec: CommandRecord): Promise<void> {
    if (this.journal && !this.replaying) {
      const durable = this.journal.append(rec);
      if (this.compactEvery && this.journal.records >= this.compactEvery && !this.compactScheduled) {
        this.compactScheduled = true;
        setImmediate(() => {
          this.compactScheduled = false;
          try {
            this.compact();
          } catch {
            // Nothing is lost whichever step failed (see compact()); the next try comes compactEvery records later.
            if (this.journal) this.journal.records = 0;
          }
        });
      }
      return durable;
    }
    if (this.trace && !this.journal && this.traceMemory > 0) this.traceAppend(JSON.stringify(rec));
    return DONE;
  }

  /** Keeps a line of in-memory trace; past the budget the trace restarts from a snapshot of the state. */
  private traceAppend(line: string): void {
    this.trace!.push(line);
    if (this.trace!.bytes > this.traceMemory) this.traceFromState(this.traceMemory / 2);
  }

  /**
   * The in-memory trace becomes one snapshot of the state, if that takes at most `room` bytes (half the budget
   * while recording, so a compaction is not followed by another at once); otherwise it is given up (null).
   */
  private traceFromState(room: number): void {
    const state = JSON.stringify({ snapshot: { ...this.snapshot(), tokens: [] } } satisfies SnapshotRecord);
    if (Buffer.byteLength(state) + 1 > room) {
      this.trace = null;
      return;
    }
    this.trace = new JsonLines();
    this.trace.push(state);
    this.recordedRevision = this.revision;
    this.recordedSeq = this.bus.lastSeq;
  }

  /**
   * run(), then wait until the record is durable. A journal failure becomes UNAVAILABLE (503), and the state
   * has been put back to what the journal holds (see attachJournal): the refused change is undone.
   */
  async apply(actor: Actor | null, cmd: Command): Promise<unknown> {
    return this.applyThen(actor, cmd, (result) => result);
  }

  /**
   * apply(), answering `answer(result)`: at once when there is nothing to wait for (no journal), so a route
   * replies without a promise or a microtask in between; otherwise once the record is durable, as apply() does.
   * A refusal throws at once.
   */
  applyThen<T>(actor: Actor | null, cmd: Command, answer: (result: unknown) => T): T | Promise<T> {
    const { result, durable } = this.run(actor, cmd);
    if (durable === DONE) return answer(result);
    return durable.then(() => answer(result), notDurable);
  }

  /** Makes `journal` this session's: a failed write reloads the state from the files (undoing what failed). */
  attachJournal(journal: Journal): void {
    this.journal = journal;
    journal.onFailure = () => {
      this.rollbackPending = true;
      try {
        this.rollback();
      } catch {
        // The files cannot be read now (a vanished data dir): retried before the next mutation, refused till then.
      }
    };
  }

  /**
   * Refuses mutations while the journal is failed, after retrying it: a disk that has room again, or a
   * transient error, clears the 503 without a restart. A deleted journal stays refused (it is opened by path).
   */
  private ensureWritable(): void {
    const j = this.journal;
    if (!j || this.replaying || (!j.failed && !this.rollbackPending)) return;
    try {
      if (this.rollbackPending) this.rollback();
      j.reopen(this.reloadedBytes);
    } catch (e) {
      fail('persistenceFailed', { reason: (e as Error).message });
    }
  }

  /** Puts the state back to what the session's files hold: every acknowledged change, nothing that failed. */
  private rollback(): void {
    const j = this.journal!;
    const files = readSessionFiles(j.path, j.lengthAtPath());
    // Counted apart from the daemon's RAM: it lives only until its state is copied over.
    const fresh = sessionFromFiles(files, { perSession: this.maxRam, ledger: new RamLedger(Infinity) });
    const seq = this.bus.lastSeq;
    try {
      // Through JSON, as a snapshot file would carry it: nothing stays shared with the discarded session.
      this.restoreSnapshot(JSON.parse(JSON.stringify(fresh.snapshot())) as SessionSnapshot);
      // A revision continued above the records (an answered bound) is not in them: the next record says it.
      this.recordedRevision = fresh.recordedRevision;
      this.answeredBound = fresh.answeredBound;
    } finally {
      fresh.close();
    }
    // The undone change's events were delivered under their numbers: those are never given again (the next record
    // says where seq stands, so a restore continues from there too).
    this.bus.advanceTo(seq);
    this.resetTlbs();
    this.gen = fresh.gen;
    this.reloadedBytes = files.validBytes;
    this.rollbackPending = false;
  }

  /** The trace: a header line and one line per command, as JSON lines (from the journal when there is one). */
  async traceLines(): Promise<string[]> {
    if (this.journal) {
      await this.journal.flush();
      // After a compaction the history before it is the snapshot: the trace starts from that state.
      const f = readSessionFiles(this.journal.path, this.journal.failed ? this.journal.lengthAtPath() : undefined);
      return [JSON.stringify(this.header()), ...[...(f.snap ? [f.snap] : []), ...f.tail].flatMap(traceLine), ...this.trailer().map((r) => JSON.stringify(r))];
    }
    if (!this.trace && this.traceMemory > 0) this.traceFromState(this.traceMemory);
    if (!this.trace) {
      // Not 429: no wait makes room. 507, as for any store that is full; the remedy is the daemon's configuration.
      fail('traceMemoryFull', { limit: this.traceMemory });
    }
    return [JSON.stringify(this.header()), ...this.trace.lines(), ...this.trailer().map((r) => JSON.stringify(r))];
  }

  /**
   * Replays records: commands re-applied through the gate. From this session's own journal (`journal`) tokens are
   * re-registered; from a trace (anyone may write one) token records and snapshot tokens are ignored, so a
   * replayed session holds only the tokens minted for it.
   */
  replay(records: readonly unknown[], from: 'journal' | 'trace' = 'journal'): void {
    this.replaying = true;
    this.replayed = 0;
    try {
      for (const r of records) {
        this.replayed++;
        if (typeof r !== 'object' || r === null) fail('traceRecordNotObject');
        if ((r as SnapshotRecord).snapshot) {
          const snap = (r as SnapshotRecord).snapshot;
          this.restoreSnapshot(from === 'trace' ? { ...this.checkSnapshot(snap), tokens: [] } : snap);
          // The history before it is this state: the session's own trace starts from it too (without tokens).
          if (!this.journal && this.trace && this.traceMemory > 0) this.traceFromState(this.traceMemory);
        } else if ((r as TokenRecord).token) {
          if (from === 'journal') this.addToken((r as TokenRecord).token);
        } else if ((r as UnrecordedRecord).unrecorded && !(r as CommandRecord).cmd) {
          this.applyUnrecorded((r as UnrecordedRecord).unrecorded);
          // Standalone, it is where revision stood exactly (a graceful stop): no reply went past it.
          if (from === 'journal') this.answeredBound = 0;
        } else if (from === 'journal' && typeof (r as AnsweredRecord).answered === 'number') {
          this.answeredBound = Math.max(this.answeredBound, (r as AnsweredRecord).answered);
        } else if ((r as CommandRecord).cmd) {
          const rec = r as CommandRecord;
          const by = ActorSchema.safeParse(rec.by ?? null);
          if (!by.success) throw shapeError('by', by.error);
          if (rec.unrecorded !== undefined) this.applyUnrecorded(rec.unrecorded);
          if (!rec.refused) this.run(by.data, rec.cmd);
          else {
            try {
              this.run(by.data, rec.cmd);
            } catch (e) {
              if (!(e instanceof IommuError)) throw e;
            }
          }
        } else if (from === 'trace') fail('traceRecordUnknown');
      }
      // TLB contents are in no record: a replayed or restored session starts with empty TLBs, as after a reset.
      this.resetTlbs();
      // After a crash, replies may have named revisions past the last record: continue above them. The next
      // record carries the revision (recordedRevision stays at the records'), so the jump replays too.
      if (from === 'journal' && this.revision < this.answeredBound) this.revision = this.answeredBound;
    } finally {
      this.replaying = false;
    }
  }

  /**
   * A snapshot from outside (a trace): of the shape snapshot() gives, for this session's SoC (its IOMMUs in order
   * and of their families, their banks, its pools), and within the RAM budget. Refused before anything changes.
   */
  private checkSnapshot(snap: unknown): SessionSnapshot {
    const p = SessionSnapshotSchema.safeParse(snap);
    if (!p.success) throw shapeError('snapshot', p.error);
    const v = p.data;
    const mismatch = (what: string): never => {
      fail('snapshotMismatch', { field: what });
    };
    const smmus = this.soc.smmus;
    if (v.soc.smmus.length !== smmus.length) mismatch('/soc/smmus');
    v.soc.smmus.forEach((x, i) => {
      const family = 'm2vcbr' in x ? 'msm' : 'idle' in x ? 'gart' : 'omap';
      const banks = 'banks' in x ? x.banks.length : 'contexts' in x ? x.contexts.length : 1;
      if (family !== smmus[i]!.family || banks !== smmus[i]!.banks.length) mismatch(`/soc/smmus/${i}`);
    });
    if (v.pools.pools.length !== this.pools.snapshot().pools.length) mismatch('/pools/pools');
    if (Buffer.from(v.soc.ptPool.used, 'base64').length !== Buffer.from(this.soc.ptPool.snapshot().used, 'base64').length) mismatch('/soc/ptPool');
    if (v.bounce && (!this.bounce || Buffer.from(v.bounce.taken, 'base64').length !== Buffer.from(this.bounce.snapshot().taken, 'base64').length)) mismatch('/bounce');
    const chunks = Object.keys(v.soc.mem).map(Number);
    for (const c of chunks) if (!this.soc.mem.isRamRange(c * CHUNK_SIZE, CHUNK_SIZE) && !this.soc.mem.isRam(c * CHUNK_SIZE)) mismatch(`/soc/mem/${c}`);
    checkRamBudget(this, chunks.reduce((n, c) => n + this.soc.mem.bytesToHold(c * CHUNK_SIZE, CHUNK_SIZE), 0));
    return v as unknown as SessionSnapshot;
  }

  /** The whole state, for a snapshot (TLB contents are not kept: they refill, as after a reset). */
  snapshot(): SessionSnapshot {
    return {
      revision: this.revision,
      faultCounts: [...this.faultCounts],
      tokens: [...this.tokens.values()].map(({ info: t }) => ({ ...(t.id !== undefined ? { id: t.id } : {}), hash: t.hash, role: t.role, label: t.label })),
      soc: this.soc.snapshot(),
      iommu: this.iommu.snapshot(),
      dma: this.dma.snapshot(),
      pools: this.pools.snapshot(),
      bus: this.bus.snapshot(),
      ...(this.cache ? { cache: this.cache.snapshot(), coherency: [...this.coherencyCounts] } : {}),
      ...(this.bounce ? { bounce: this.bounce.snapshot() } : {}),
    };
  }

  restoreSnapshot(s: SessionSnapshot): void {
    this.soc.restore(s.soc);
    this.iommu.restore(s.iommu);
    this.dma.restore(s.dma);
    this.pools.restore(s.pools);
    this.bus.restore(s.bus);
    if (this.cache && s.cache) this.cache.restore(s.cache);
    if (this.bounce && s.bounce) this.bounce.restore(s.bounce);
    for (const [k, n] of s.coherency ?? []) this.coherencyCounts.set(k, n);
    this.revision = s.revision;
    this.recordedRevision = s.revision;
    this.recordedSeq = this.bus.lastSeq;
    this.faults = s.faultCounts.length > 0 ? new Map(s.faultCounts) : null;
    // A snapshot is the whole state: tokens and stall timers not in it go.
    this.tokens.clear();
    this.tokenGen++;
    for (const t of s.tokens) this.addToken(t);
    this.clearStallTimers();
    for (const smmu of this.soc.smmus) for (const b of smmu.banks) for (const st of b.stalls) this.armStallTimer(smmu.name, b.index, st.id);
  }

  /** Path of this session's snapshot (beside its journal). */
  get snapshotPath(): string | null {
    return this.journal ? this.journal.path.replace(/\.journal$/, '.snap') : null;
  }

  /**
   * Compaction: the state goes to a snapshot (atomic, durable) and the journal restarts empty under a new
   * generation. The snapshot names the journal bytes it covers, so a crash or a failure between the two writes
   * leaves an old-generation journal whose covered records restore skips and whose later records it applies.
   */
  compact(): void {
    const journal = this.journal;
    if (!journal || journal.failed) return;
    journal.flushSync();
    const gen = this.gen + 1;
    const covers = { gen: this.gen, bytes: journal.bytes };
    writeFileAtomic(this.snapshotPath!, encodeRecord({ ...this.header(), gen, covers, snapshot: this.snapshot() }));
    // The snapshot holds revision and seq as they are now, whatever the journal's records said (and no reply went
    // past this revision yet: the next unrecorded translation writes a new bound into the new journal).
    this.recordedRevision = this.revision;
    this.answeredBound = this.revision;
    this.recordedSeq = this.bus.lastSeq;
    journal.resetSync({ ...this.header(), gen });
    this.gen = gen;
    this.compactions++;
  }

  /** Journal generation (see TraceHeader.gen). */
  gen = 0;
  compactions = 0;
  /** Records after which the journal is compacted into a snapshot (0: never). */
  compactEvery = 0;
  private compactScheduled = false;

  /**
   * Hands the in-memory trace over (to a journal just opened for this session): its records, or the state they
   * led to when the trace was given up, and where revision and seq stand after them.
   */
  takeTrace(): unknown[] {
    const t = this.trace ? this.trace.lines().map((l) => JSON.parse(l) as unknown) : [{ snapshot: { ...this.snapshot(), tokens: [] } }];
    t.push(...this.trailer());
    this.trace = new JsonLines();
    return t;
  }

  /** Aborted when the session closes (deleted, or the daemon stops): its sockets close with a reason. */
  get closing(): AbortSignal {
    if (!this.lifetime) {
      this.lifetime = new AbortController();
      if (this.closed) this.lifetime.abort();
    }
    return this.lifetime.signal;
  }

  close(): void {
    const hw = this.hw;
    if (!this.ramReleased && hw) {
      this.ramReleased = true;
      this.ramLedger.held -= hw.soc.mem.bytesHeld;
      hw.soc.mem.onChunk = null;
    }
    this.closed = true;
    this.lifetime?.abort();
    hw?.dma.close();
    this.clearStallTimers();
    this.untap?.();
  }

  private clearStallTimers(): void {
    if (!this.stallTimers) return;
    for (const t of this.stallTimers.values()) clearTimeout(t);
    this.stallTimers.clear();
  }

  /** A token from a journal or snapshot (its digest as hex). */
  private addToken(t: TokenInfo): void {
    const info: TokenInfo = { ...(t.id !== undefined ? { id: t.id } : {}), hash: t.hash, role: t.role, label: t.label };
    // A stored hash that is not 64 hex digits (a hand-edited journal) has no digest and matches nothing.
    const valid = /^[0-9a-fA-F]{64}$/.test(info.hash);
    this.tokens.set(info.id ?? info.hash, { info, digest: valid ? info.hash.toLowerCase() : null, verified: undefined });
    this.tokenGen++;
  }

  /** A command no request asked for (timers): applied and journaled like any other. */
  private background(cmd: Command): void {
    try {
      this.run(SYSTEM, cmd).durable.catch(() => {});
    } catch {
      // A refused background command changes nothing.
    }
  }

  private armStallTimer(smmu: string, context: number, stall: string): void {
    const t = setTimeout(() => {
      this.stallTimers?.delete(stall);
      const bank = this.soc.smmus.find((s) => s.name === smmu)?.banks[context];
      if (bank?.stalls.some((s) => s.id === stall)) this.background({ op: 'resume', smmu, ctx: String(context), stall, action: 'timeout' });
    }, this.stallTimeoutMs);
    t.unref();
    (this.stallTimers ??= new Map()).set(stall, t);
  }
}

/**
 * Sessions one daemon holds unless told otherwise (--max-sessions): an idle session costs well under 128 KiB,
 * since registers, TLBs, RAM chunks and event rings are allocated on first use.
 */
export const DEFAULT_MAX_SESSIONS = 4096;

export interface RegistryOptions {
  maxSessions: number;
  /** Where journals live; null: in memory only. */
  dataDir?: string | null;
  /** Journal records after which a session is compacted into a snapshot (default 100,000; 0 never). */
  compactEvery?: number;
  /** The node id that prefixes every session id (default `s`). */
  nodeId?: string;
  /** Bytes of in-memory trace per session without a journal (default DEFAULT_TRACE_MEMORY). */
  traceMemory?: number;
  /** Bytes of emulated RAM one session may hold (default DEFAULT_MAX_RAM_PER_SESSION). */
  maxRamPerSession?: number;
  /** Bytes of emulated RAM all sessions together may hold (default: half the machine's memory). */
  maxRam?: number;
}

/** Default of --max-ram: half the machine's memory, the rest left to the process and everything else. */
export function defaultMaxRam(): number {
  return Math.floor(totalmem() / 2 / CHUNK_SIZE) * CHUNK_SIZE;
}

export class SessionRegistry {
  readonly sessions = new Map<string, Session>();
  private seq = 0;
  /** Creations under way (their journals are being written): they count against the session limit. */
  private creating = 0;
  /** Emulated RAM held by all sessions (restored ones included), against --max-ram. */
  readonly ram: RamLedger;

  constructor(readonly opts: RegistryOptions = { maxSessions: DEFAULT_MAX_SESSIONS }) {
    if (opts.nodeId !== undefined && !isNodeId(opts.nodeId)) throw new Error(`bad node id ${JSON.stringify(opts.nodeId)}: 1-16 lower-case letters and digits`);
    if (opts.dataDir) checkDataDir(opts.dataDir);
    this.ram = new RamLedger(opts.maxRam ?? defaultMaxRam());
    this.sessionDefaults = { ...(opts.traceMemory !== undefined ? { traceMemory: opts.traceMemory } : {}), ram: { perSession: opts.maxRamPerSession ?? DEFAULT_MAX_RAM_PER_SESSION, ledger: this.ram } };
  }

  /** What every session of this daemon is made with: its budgets (one object, shared: sessions only read it). */
  private readonly sessionDefaults: Pick<SessionOptions, 'traceMemory' | 'ram'>;

  get nodeId(): string {
    return this.opts.nodeId ?? DEFAULT_NODE_ID;
  }

  get limits(): RegistryOptions {
    return this.opts;
  }

  /** Creates a session (and its journal, durably, when persistence is on); returns its owner token. */
  async create(opts: Omit<SessionOptions, 'id'> & { trace?: readonly unknown[]; persist?: boolean }): Promise<{ session: Session; token: string }> {
    // The slot is taken before the first await: concurrent creations cannot all pass the check.
    if (this.sessions.size + this.creating >= this.opts.maxSessions) {
      fail('tooManySessions', { limit: this.opts.maxSessions });
    }
    this.creating++;
    try {
      return await this.createReserved(opts);
    } finally {
      this.creating--;
    }
  }

  private async createReserved(opts: Omit<SessionOptions, 'id'> & { trace?: readonly unknown[]; persist?: boolean }): Promise<{ session: Session; token: string }> {
    // `node-` then lower-case hex only: the proxy routes by the prefix, clients treat the whole id as opaque.
    const id = `${this.nodeId}-${(++this.seq).toString(16)}${randomText(6, 'hex')}`;
    // One spread (a shape-keyed clone); the budgets are set on it rather than spread in as a second object.
    const d = this.sessionDefaults;
    const session = new Session({ ...opts, id, traceMemory: d.traceMemory ?? opts.traceMemory, ram: d.ram });
    session.bus.emit({ type: 'session', action: 'create', session: id });
    if (opts.trace) {
      try {
        session.replay(opts.trace, 'trace');
      } catch (e) {
        session.close();
        // Records count from the one after the header (line n + 1 of a JSON-lines trace).
        const n = session.replayed;
        if (e instanceof IommuError) throw e.within(`trace record ${n}`, { record: n }, e.code === 'UNAVAILABLE' ? 'BAD_REQUEST' : e.code);
        fail('traceRecordMalformed', { record: n });
      }
    }
    if (!this.opts.dataDir || opts.persist === false) {
      const { token } = session.mintToken('owner', 'owner');
      this.sessions.set(id, session);
      return { session, token };
    }
    const path = this.journalPath(id);
    try {
      Journal.createSync(path, session.header());
    } catch (e) {
      session.close();
      fail('journalCreate', { reason: (e as Error).message });
    }
    try {
      session.attachJournal(await Journal.open(path));
      session.compactEvery = this.opts.compactEvery ?? 100_000;
      // A replayed trace becomes this session's own history: journal it after the header.
      if (opts.trace) {
        const records = session.takeTrace();
        try {
          records.forEach(encodeRecord);
        } catch (e) {
          fail('traceNotStorable', { reason: (e as Error).message });
        }
        await Promise.all(records.map((r) => session.journal!.append(r))).catch((e: Error) => {
          fail('journalWrite', { reason: e.message });
        });
      }
      const { token, durable } = session.mintToken('owner', 'owner');
      await durable;
      this.sessions.set(id, session);
      return { session, token };
    } catch (e) {
      // Nothing of a session that was refused may stay: no journal for restore to resurrect.
      session.close();
      await session.journal?.close();
      try {
        unlinkSync(path);
      } catch {
        // Already gone (or the data dir is): nothing to resurrect either.
      }
      throw e instanceof IommuError ? e : refusal('journalCreate', { reason: (e as Error).message });
    }
  }

  get(id: string): Session | undefined {
    return this.sessions.get(id);
  }

  /**
   * Deletes a session: its journal first, so a file that cannot be removed (a vanished or read-only data dir)
   * refuses the delete with 503 and the session stays, rather than coming back at the next restart.
   */
  async delete(id: string): Promise<void> {
    const s = this.sessions.get(id);
    if (!s) return;
    if (s.journal) {
      await s.journal.flush();
      try {
        unlinkSync(s.journal.path);
      } catch (e) {
        fail('journalRemove', { reason: (e as Error).message });
      }
      try {
        unlinkSync(s.snapshotPath!);
      } catch {
        // No snapshot, or it cannot go: restore reads a snapshot only beside its journal.
      }
    }
    this.sessions.delete(id);
    s.bus.emit({ type: 'session', action: 'delete', session: id });
    s.close();
    await s.journal?.close();
  }

  /** Restores every journaled session: each to exactly its last acknowledged state. */
  async restore(log: (msg: string, extra?: Record<string, unknown>) => void = () => {}): Promise<number> {
    const dir = this.opts.dataDir;
    if (!dir || !existsSync(dir)) return 0;
    let n = 0;
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.journal')).sort()) {
      const path = join(dir, f);
      let session: Session;
      try {
        const files = readSessionFiles(path);
        if (files.torn) log('journal had a torn tail: cut at the last whole record', { path, validBytes: files.validBytes });
        session = await this.restoreOne(path, files);
      } catch (e) {
        // One unreadable session must not keep the daemon (and every other session) down: skip it, keep its files.
        log('could not restore a session: skipped, its files are kept', { path, error: (e as Error).message });
        continue;
      }
      this.sessions.set(session.id, session);
      n++;
    }
    return n;
  }

  private async restoreOne(path: string, files: SessionFiles): Promise<Session> {
    const session = sessionFromFiles(files, this.sessionDefaults.ram);
    try {
      session.attachJournal(await Journal.open(path, files.stale ? undefined : files.torn ? files.validBytes : undefined));
      session.compactEvery = this.opts.compactEvery ?? 100_000;
      if (files.stale) session.journal!.resetSync({ ...session.header(), gen: session.gen });
    } catch (e) {
      session.close();
      await session.journal?.close();
      throw e;
    }
    return session;
  }

  async closeAll(): Promise<void> {
    for (const s of this.sessions.values()) {
      s.close();
      await s.writeTrailer();
      await s.journal?.close();
    }
  }

  private journalPath(id: string): string {
    return join(this.opts.dataDir!, `${id}.journal`);
  }
}
