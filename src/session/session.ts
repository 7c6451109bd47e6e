/**
 * One simulated SoC shared by many users: the hardware, the IOMMU API over it, the event stream, tokens and the
 * revision counter. The only place that knows all of the layers below.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { IommuError } from '../errors.js';
import { EventBus } from '../events/bus.js';
import type { Profile } from '../hw/profile.js';
import { Soc } from '../hw/soc.js';
import type { TlbPolicy } from '../hw/tlb.js';
import { DmaApi } from '../dma/dma.js';
import { Iommu, type IommuLimits } from '../iommu/iommu.js';
import { BufferPools } from '../memory/pools.js';

export type Role = 'observer' | 'operator' | 'owner';
const ROLE_RANK: Record<Role, number> = { observer: 0, operator: 1, owner: 2 };

export interface TokenInfo {
  role: Role;
  label: string | null;
  hash: Buffer;
}

export interface SessionOptions {
  id: string;
  name: string;
  profile: Profile;
  tlbEntries?: number;
  tlbPolicy?: TlbPolicy;
  stallTimeoutMs?: number;
  eventRetain?: number;
  limits?: Partial<IommuLimits>;
}

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

export class Session {
  readonly id: string;
  readonly name: string;
  readonly profile: Profile;
  readonly createdAt = new Date().toISOString();
  readonly soc: Soc;
  readonly iommu: Iommu;
  readonly bus: EventBus;
  readonly pools: BufferPools;
  readonly dma: DmaApi;
  readonly tlbEntries: number;
  readonly tlbPolicy: TlbPolicy;
  readonly stallTimeoutMs: number;
  revision = 0;
  /** Faults by kind, for metrics. */
  readonly faultCounts = new Map<string, number>();
  private readonly tokens = new Map<string, TokenInfo>();
  private readonly stallTimers = new Map<string, NodeJS.Timeout>();
  private unsubscribeStalls: () => void;

  constructor(opts: SessionOptions) {
    this.id = opts.id;
    this.name = opts.name;
    this.profile = opts.profile;
    this.tlbEntries = opts.tlbEntries ?? 128;
    this.tlbPolicy = opts.tlbPolicy ?? 'lru';
    this.stallTimeoutMs = opts.stallTimeoutMs ?? 30_000;
    this.bus = new EventBus(opts.eventRetain ?? 10_000);
    this.soc = new Soc(opts.profile, this.bus, { tlbEntries: this.tlbEntries, tlbPolicy: this.tlbPolicy });
    this.iommu = new Iommu(this.soc, this.bus, { maxDomains: 1024, maxMappedPages: 4 * 1024 * 1024, ...opts.limits });
    this.pools = new BufferPools(this.soc.mem, opts.profile.memory, opts.profile.pagetablePool);
    this.dma = new DmaApi(this.iommu, this.bus);
    this.unsubscribeStalls = this.bus.tap((ev) => {
      if (ev.type === 'fault') this.faultCounts.set(ev.kind as string, (this.faultCounts.get(ev.kind as string) ?? 0) + 1);
      else if (ev.type === 'stall') this.armStallTimer(ev.smmu as string, ev.context as number, ev.stall as string);
      else if (ev.type === 'resume') {
        const t = this.stallTimers.get(ev.stall as string);
        if (t) clearTimeout(t);
        this.stallTimers.delete(ev.stall as string);
      }
    });
  }

  mintToken(role: Role, label: string | null = null): string {
    const token = randomBytes(24).toString('base64url');
    const hash = hashToken(token);
    this.tokens.set(hash.toString('hex'), { role, label, hash });
    return token;
  }

  /** The token's role and label, or null. The comparison of the digests is constant-time. */
  authenticate(token: string): TokenInfo | null {
    const hash = hashToken(token);
    const info = this.tokens.get(hash.toString('hex'));
    return info && timingSafeEqual(info.hash, hash) ? info : null;
  }

  static allows(role: Role, needed: Role): boolean {
    return ROLE_RANK[role] >= ROLE_RANK[needed];
  }

  /**
   * Runs one state-changing operation: events it emits carry the actor; revision rises by one only when it
   * succeeds. Operations are synchronous, so one session's operations are serialized in arrival order.
   */
  mutate<T>(actor: { role: Role; label: string | null } | null, fn: () => T): T {
    const prev = this.bus.actor;
    this.bus.actor = actor ? { role: actor.role, label: actor.label } : null;
    try {
      const r = fn();
      this.revision++;
      return r;
    } finally {
      this.bus.actor = prev;
    }
  }

  close(): void {
    this.dma.close();
    for (const t of this.stallTimers.values()) clearTimeout(t);
    this.stallTimers.clear();
    this.unsubscribeStalls();
  }

  private armStallTimer(smmuName: string, context: number, stall: string): void {
    const t = setTimeout(() => {
      this.stallTimers.delete(stall);
      const smmu = this.soc.smmus.find((s) => s.name === smmuName);
      const bank = smmu?.banks[context];
      if (smmu && bank?.stalls.some((s) => s.id === stall)) {
        this.mutate({ role: 'owner', label: 'stall-timeout' }, () => smmu.resume(bank, stall, 'timeout'));
      }
    }, this.stallTimeoutMs);
    t.unref();
    this.stallTimers.set(stall, t);
  }
}

export interface RegistryLimits {
  maxSessions: number;
}

export class SessionRegistry {
  readonly sessions = new Map<string, Session>();
  private seq = 0;

  constructor(readonly limits: RegistryLimits = { maxSessions: 64 }) {}

  create(opts: Omit<SessionOptions, 'id'>): { session: Session; token: string } {
    if (this.sessions.size >= this.limits.maxSessions) {
      throw new IommuError('LIMIT', `the daemon holds at most ${this.limits.maxSessions} sessions`, { limit: this.limits.maxSessions });
    }
    const id = `s-${(++this.seq).toString(36)}${randomBytes(6).toString('hex')}`;
    const session = new Session({ ...opts, id });
    const token = session.mintToken('owner', 'owner');
    this.sessions.set(id, session);
    session.bus.emit({ type: 'session', action: 'create', session: id });
    return { session, token };
  }

  get(id: string): Session | undefined {
    return this.sessions.get(id);
  }

  delete(id: string): void {
    const s = this.sessions.get(id);
    if (!s) return;
    s.bus.emit({ type: 'session', action: 'delete', session: id });
    s.close();
    this.sessions.delete(id);
  }

  closeAll(): void {
    for (const s of this.sessions.values()) s.close();
  }
}
