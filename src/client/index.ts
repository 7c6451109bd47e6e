/**
 * The TypeScript SDK: one typed method per route of API.md, typed errors carrying the API's error code, an event
 * subscription that reconnects and resumes with `since` (a client never misses an event: it gets it, or a gap
 * that names it), and the binary translate stream with a promise per batch and backpressure.
 */
import WebSocket from 'ws';
import type { z } from 'zod';
import type * as S from '../api/schemas.js';
import {
  decodeReply,
  encodeRequest,
  OP_MMIO_READ,
  OP_MMIO_WRITE,
  OP_READ,
  OP_TRANSLATE_EXEC,
  OP_TRANSLATE_READ,
  OP_TRANSLATE_WRITE,
  OP_WRITE,
  type StreamItem,
} from '../api/stream.js';

type In<T extends z.ZodType> = z.input<T>;
type Out<T extends z.ZodType> = z.output<T>;
type Addr = number | string;

/** A refusal from the daemon: `code` is API.md's (ALREADY_MAPPED, DMA_DEBUG, ...), `status` the HTTP status. */
export class IommudError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'IommudError';
  }
}

/** The daemon could not be reached (refused, reset, timed out). */
export class IommudConnectionError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'IommudConnectionError';
  }
}

export interface ClientOptions {
  /** Base URL of the daemon, e.g. http://127.0.0.1:8080 (IOMMUD_URL). */
  url: string;
  /** Bearer token for session routes (IOMMUD_TOKEN). */
  token?: string;
}

async function request<T>(base: string, token: string | undefined, method: string, path: string, body?: unknown, raw?: Uint8Array, onResponse?: (res: Response) => void): Promise<T> {
  let res: Response;
  try {
    res = await fetch(base + path, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(raw ? { 'content-type': 'application/octet-stream' } : body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: raw ? Buffer.from(raw) : body !== undefined ? JSON.stringify(body) : undefined,
    });
  } catch (e) {
    throw new IommudConnectionError(`cannot reach ${base}: ${(e as Error).message}`, e);
  }
  onResponse?.(res);
  if (res.status === 204) return undefined as T;
  const type = res.headers.get('content-type') ?? '';
  if (!res.ok) {
    const err = type.includes('application/json') ? ((await res.json()) as { error?: { code: string; message: string; details?: Record<string, unknown> } }).error : undefined;
    throw new IommudError(err?.code ?? 'HTTP_' + res.status, err?.message ?? res.statusText, res.status, err?.details);
  }
  if (type.includes('application/octet-stream')) return new Uint8Array(await res.arrayBuffer()) as T;
  if (type.includes('application/json')) return (await res.json()) as T;
  return (await res.text()) as T;
}

/** The daemon's JSON refusal of a WebSocket upgrade (its HTTP answer), as an IommudError with its own message. */
function upgradeRefusal(res: import('node:http').IncomingMessage): Promise<IommudError> {
  return new Promise((resolve) => {
    let body = '';
    const done = () => {
      let err: { code?: string; message?: string; details?: Record<string, unknown> } | undefined;
      try {
        err = (JSON.parse(body) as { error?: typeof err }).error;
      } catch {
        // not the contract's shape (a proxy's page): keep the status
      }
      const status = res.statusCode ?? 0;
      resolve(new IommudError(err?.code ?? `HTTP_${status}`, err?.message ?? (res.statusMessage || 'refused'), status, err?.details));
    };
    res.setEncoding('utf8');
    res.on('data', (c: string) => (body += c));
    res.on('end', done);
    res.on('error', done);
  });
}

export class IommudClient {
  readonly url: string;
  readonly token: string | undefined;

  constructor(opts: ClientOptions) {
    this.url = opts.url.replace(/\/$/, '');
    this.token = opts.token;
  }

  health(): Promise<Out<typeof S.HealthResponse>> {
    return request(this.url, undefined, 'GET', '/health');
  }

  version(): Promise<Out<typeof S.VersionResponse>> {
    return request(this.url, undefined, 'GET', '/v1/version');
  }

  profiles(): Promise<Out<typeof S.ProfilesResponse>> {
    return request(this.url, undefined, 'GET', '/v1/profiles');
  }

  /** Creates a session; the returned client carries its owner token. */
  async createSession(body: NonNullable<In<typeof S.CreateSessionBody>> = {}): Promise<SessionClient & { created: Out<typeof S.CreateSessionResponse> }> {
    const created = await request<Out<typeof S.CreateSessionResponse>>(this.url, undefined, 'POST', '/v1/sessions', body);
    return Object.assign(new SessionClient(this.url, created.id, created.token), { created });
  }

  /** A client for an existing session (token from the options unless given). */
  session(id: string, token = this.token): SessionClient {
    if (!token) throw new Error('a session client needs a token');
    return new SessionClient(this.url, id, token);
  }

  metrics(): Promise<string> {
    return request(this.url, undefined, 'GET', '/metrics');
  }
}

const enc = encodeURIComponent;

/** One page of a long list and the cursor of the next (from the Link rel="next" header), if any. */
export interface Page<T> {
  items: T[];
  next: { from: string; limit: number } | null;
}

function nextFromLink(res: Response): Page<unknown>['next'] {
  const m = /<([^>]*)>;\s*rel="next"/.exec(res.headers.get('link') ?? '');
  if (!m) return null;
  const q = new URLSearchParams(m[1]!.split('?')[1] ?? '');
  return { from: q.get('from') ?? '0x0', limit: Number(q.get('limit') ?? 1000) };
}

const query = (q: Record<string, unknown>): string => {
  const qs = Object.entries(q)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${enc(String(v))}`)
    .join('&');
  return qs ? '?' + qs : '';
};

export class SessionClient {
  constructor(
    readonly url: string,
    readonly id: string,
    readonly token: string,
  ) {}

  private call<T>(method: string, path: string, body?: unknown): Promise<T> {
    return request<T>(this.url, this.token, method, `/v1/sessions/${this.id}${path}`, body);
  }

  private async page<T>(path: string, q: Record<string, unknown>): Promise<Page<T>> {
    let next: Page<T>['next'] = null;
    const items = await request<T[]>(this.url, this.token, 'GET', `/v1/sessions/${this.id}${path}${query(q)}`, undefined, undefined, (res) => (next = nextFromLink(res)));
    return { items, next };
  }

  // ---- session ----
  get(): Promise<Out<typeof S.SessionResponse>> {
    return this.call('GET', '/');
  }
  delete(): Promise<void> {
    return this.call('DELETE', '/');
  }
  mintToken(role: 'observer' | 'operator' | 'owner', label?: string): Promise<Out<typeof S.TokenResponse>> {
    return this.call('POST', '/tokens', { role, ...(label !== undefined ? { label } : {}) });
  }
  trace(): Promise<string> {
    return this.call('GET', '/trace');
  }

  // ---- hardware ----
  smmus(): Promise<Out<typeof S.SmmusResponse>> {
    return this.call('GET', '/smmus');
  }
  context(smmu: string, ctx: string | number): Promise<Out<typeof S.ContextResponse>> {
    return this.call('GET', `/smmus/${enc(smmu)}/contexts/${enc(String(ctx))}`);
  }
  configureContext(smmu: string, ctx: string | number, body: In<typeof S.PatchContextBody>): Promise<Out<typeof S.ContextResponse>> {
    return this.call('PATCH', `/smmus/${enc(smmu)}/contexts/${enc(String(ctx))}`, body);
  }
  clearFault(smmu: string, ctx: string | number, value?: Addr): Promise<Out<typeof S.ContextResponse>> {
    return this.call('POST', `/smmus/${enc(smmu)}/contexts/${enc(String(ctx))}/clear-fault`, value !== undefined ? { value } : {});
  }
  resume(smmu: string, ctx: string | number, stall: string, action: 'retry' | 'terminate'): Promise<Out<typeof S.AccessResponse>> {
    return this.call('POST', `/smmus/${enc(smmu)}/contexts/${enc(String(ctx))}/resume`, { stall, action });
  }
  injectFault(smmu: string, ctx: string | number, kind: 'external' | 'multi-hit' | 'tlb-miss'): Promise<Out<typeof S.ContextResponse>> {
    return this.call('POST', `/smmus/${enc(smmu)}/contexts/${enc(String(ctx))}/inject-fault`, { kind });
  }
  mmioRead(smmu: string, offset: Addr): Promise<Out<typeof S.MmioResponse>> {
    return this.call('GET', `/smmus/${enc(smmu)}/mmio/${enc(String(offset))}`);
  }
  mmioWrite(smmu: string, offset: Addr, value: Addr): Promise<Out<typeof S.MmioResponse>> {
    return this.call('PUT', `/smmus/${enc(smmu)}/mmio/${enc(String(offset))}`, { value });
  }
  mmioBatch(smmu: string, ops: In<typeof S.MmioBatchBody>['ops']): Promise<Out<typeof S.MmioBatchResponse>> {
    return this.call('POST', `/smmus/${enc(smmu)}/mmio`, { ops });
  }
  masterAccess(smmu: string, mid: number, body: In<typeof S.AccessBody>): Promise<Out<typeof S.AccessResponse>> {
    return this.call('POST', `/smmus/${enc(smmu)}/masters/${mid}/access`, body);
  }

  // ---- domains (IOMMU API) ----
  allocDomain(body: NonNullable<In<typeof S.CreateDomainBody>> = {}): Promise<Out<typeof S.DomainResponse>> {
    return this.call('POST', '/domains', body);
  }
  domains(): Promise<Out<typeof S.DomainsResponse>> {
    return this.call('GET', '/domains');
  }
  domain(did: string): Promise<Out<typeof S.DomainResponse>> {
    return this.call('GET', `/domains/${enc(did)}`);
  }
  freeDomain(did: string): Promise<void> {
    return this.call('DELETE', `/domains/${enc(did)}`);
  }
  attach(did: string, device: string, replace?: boolean): Promise<Out<typeof S.DomainResponse>> {
    return this.call('POST', `/domains/${enc(did)}/attach`, { device, ...(replace !== undefined ? { replace } : {}) });
  }
  detach(did: string, device: string): Promise<Out<typeof S.DomainResponse>> {
    return this.call('POST', `/domains/${enc(did)}/detach`, { device });
  }
  map(did: string, body: In<typeof S.MapBody>): Promise<Out<typeof S.MapResponse>> {
    return this.call('POST', `/domains/${enc(did)}/map`, body);
  }
  unmap(did: string, body: In<typeof S.UnmapBody>): Promise<Out<typeof S.UnmapResponse>> {
    return this.call('POST', `/domains/${enc(did)}/unmap`, body);
  }
  batch(did: string, ops: In<typeof S.BatchBody>['ops']): Promise<Out<typeof S.BatchResponse>> {
    return this.call('POST', `/domains/${enc(did)}/batch`, { ops });
  }
  /** One page of extents (default 1000); `mappingsPage` gives the cursor, `allMappings` follows it. */
  mappings(did: string, q: { from?: Addr; to?: Addr; limit?: number } = {}): Promise<Out<typeof S.MappingsResponse>> {
    return this.call('GET', `/domains/${enc(did)}/mappings${query(q)}`);
  }
  mappingsPage(did: string, q: { from?: Addr; to?: Addr; limit?: number } = {}): Promise<Page<Out<typeof S.MappingsResponse>[number]>> {
    return this.page(`/domains/${enc(did)}/mappings`, q);
  }
  async *allMappings(did: string, q: { from?: Addr; to?: Addr; limit?: number } = {}): AsyncGenerator<Out<typeof S.MappingsResponse>[number]> {
    for (let p = await this.mappingsPage(did, q); ; p = await this.mappingsPage(did, { ...q, ...p.next })) {
      yield* p.items;
      if (!p.next) return;
    }
  }
  iovaToPhys(did: string, iova: Addr): Promise<Out<typeof S.IovaToPhysResponse>> {
    return this.call('GET', `/domains/${enc(did)}/iova-to-phys/${enc(String(iova))}`);
  }
  /** The raw two-level table of an msm or omap domain. */
  pagetable(did: string): Promise<Out<typeof S.LevelsPagetable>> {
    return this.call('GET', `/domains/${enc(did)}/pagetable`);
  }

  /** The entries of a gart domain (the same route, the GART's shape). */
  gartEntries(did: string): Promise<Out<typeof S.GartPagetable>> {
    return this.call('GET', `/domains/${enc(did)}/pagetable`);
  }
  flush(did: string, range?: { iova: Addr; size?: Addr }): Promise<Out<typeof S.FlushResponse>> {
    return this.call('POST', `/domains/${enc(did)}/flush`, range ?? {});
  }
  sync(did: string): Promise<Out<typeof S.SyncResponse>> {
    return this.call('POST', `/domains/${enc(did)}/sync`);
  }

  // ---- devices ----
  access(device: string, body: In<typeof S.AccessBody>): Promise<Out<typeof S.AccessResponse>> {
    return this.call('POST', `/devices/${enc(device)}/access`, body);
  }
  accessBatch(device: string, body: In<typeof S.AccessBatchBody>): Promise<Out<typeof S.AccessBatchResponse>> {
    return this.call('POST', `/devices/${enc(device)}/access-batch`, body);
  }

  // ---- memory and buffers ----
  pools(): Promise<Out<typeof S.PoolsResponse>> {
    return this.call('GET', '/pools');
  }
  buffers(q: { from?: Addr; limit?: number } = {}): Promise<Out<typeof S.BuffersResponse>> {
    return this.call('GET', `/buffers${query(q)}`);
  }
  buffersPage(q: { from?: Addr; limit?: number } = {}): Promise<Page<Out<typeof S.BuffersResponse>[number]>> {
    return this.page('/buffers', q);
  }
  allocBuffer(body: In<typeof S.BufferBody>): Promise<Out<typeof S.BufferResponse>> {
    return this.call('POST', '/buffers', body);
  }
  freeBuffer(paddr: Addr): Promise<void> {
    return this.call('DELETE', `/buffers/${enc(String(paddr))}`);
  }
  /** A CPU load (through the CPU cache when the session has one); `view: 'ram'` reads RAM as devices see it. */
  readMemory(paddr: Addr, size: number, opts: { view?: 'cpu' | 'ram' } = {}): Promise<Uint8Array> {
    return this.call('GET', `/memory?paddr=${enc(String(paddr))}&size=${size}${opts.view ? `&view=${opts.view}` : ''}`);
  }
  writeMemory(paddr: Addr, data: Uint8Array): Promise<void> {
    return request(this.url, this.token, 'PUT', `/v1/sessions/${this.id}/memory?paddr=${enc(String(paddr))}`, undefined, data);
  }

  // ---- CPU cache (v1.1) ----
  /** Cached lines (in a range, or all), whether dirty. */
  cache(range: { paddr?: Addr; size?: number } = {}): Promise<Out<typeof S.CacheResponse>> {
    const q = range.paddr !== undefined ? `?paddr=${enc(String(range.paddr))}${range.size !== undefined ? `&size=${range.size}` : ''}` : '';
    return this.call('GET', `/cache${q}`);
  }
  /** Writes the dirty lines of a range back to RAM. */
  cacheClean(paddr: Addr, size: Addr): Promise<Out<typeof S.CacheMaintainResponse>> {
    return this.call('POST', '/cache/clean', { paddr, size });
  }
  /** Drops the lines of a range (dirty data is lost). */
  cacheInvalidate(paddr: Addr, size: Addr): Promise<Out<typeof S.CacheMaintainResponse>> {
    return this.call('POST', '/cache/invalidate', { paddr, size });
  }
  /** Clean, then invalidate. */
  cacheFlush(paddr: Addr, size: Addr): Promise<Out<typeof S.CacheMaintainResponse>> {
    return this.call('POST', '/cache/flush', { paddr, size });
  }

  // ---- DMA API ----
  dmaState(device: string): Promise<Out<typeof S.DmaStateResponse>> {
    return this.call('GET', `/devices/${enc(device)}/dma`);
  }
  dmaConfigure(device: string, body: In<typeof S.DmaConfigBody>): Promise<Out<typeof S.DmaStateResponse>> {
    return this.call('PATCH', `/devices/${enc(device)}/dma`, body);
  }
  dmaMap(device: string, body: In<typeof S.DmaMapBody>): Promise<Out<typeof S.DmaMapResponse>> {
    return this.call('POST', `/devices/${enc(device)}/dma/map`, body);
  }
  dmaMapSg(device: string, body: In<typeof S.DmaMapSgBody>): Promise<Out<typeof S.DmaMapSgResponse>> {
    return this.call('POST', `/devices/${enc(device)}/dma/map-sg`, body);
  }
  dmaUnmap(device: string, body: In<typeof S.DmaUnmapBody>): Promise<void> {
    return this.call('POST', `/devices/${enc(device)}/dma/unmap`, body);
  }
  dmaSync(device: string, body: In<typeof S.DmaSyncBody>): Promise<void> {
    return this.call('POST', `/devices/${enc(device)}/dma/sync`, body);
  }

  // ---- streams ----
  /** Subscribes to the event stream; reconnects and resumes with `since` until closed. */
  subscribe<T extends EventType = EventType>(opts: SubscribeOptions<T>): EventSubscription {
    return new EventSubscription(this.wsUrl('/events'), this.token, opts as unknown as SubscribeOptions);
  }

  /** Opens the binary translate stream of a device. */
  stream(device: string, opts: { maxInFlight?: number } = {}): Promise<TranslateStream> {
    return TranslateStream.open(this.wsUrl(`/devices/${enc(device)}/stream`), this.token, opts.maxInFlight ?? 64);
  }

  private wsUrl(path: string): string {
    return `${this.url.replace(/^http/, 'ws')}/v1/sessions/${this.id}${path}`;
  }
}

/** An event as the daemon sends it (API.md "Events"), typed by `type` from the daemon's one declaration. */
export type IommudEvent = z.output<typeof S.Event>;
export type EventType = IommudEvent['type'];
/** The event of one type, its variants included: `EventOf<'fault'>` is the msm, omap and gart fault. */
export type EventOf<T extends EventType> = Extract<IommudEvent, { type: T }>;
/** A coherency check report (API.md v1.1): never a refusal, once per line and cause. */
export type CoherencyEvent = EventOf<'coherency'>;
/** One bounce copy (swiotlb): `dir` is the mapping's direction, `from`/`to` the copy's physical addresses. */
export type BounceEvent = EventOf<'bounce'>;
/** CPU cache maintenance by a client (POST .../cache/clean|invalidate|flush): `lines` it acted on. */
export type CacheEvent = EventOf<'cache'>;

export const isCoherencyEvent = (ev: IommudEvent): ev is CoherencyEvent => ev.type === 'coherency';
export const isBounceEvent = (ev: IommudEvent): ev is BounceEvent => ev.type === 'bounce';
export const isCacheEvent = (ev: IommudEvent): ev is CacheEvent => ev.type === 'cache';

/** With `types`, `onEvent` receives exactly those types' events (`types: ['fault']`: faults, typed as such). */
export interface SubscribeOptions<T extends EventType = EventType> {
  types?: readonly T[];
  device?: string;
  /** Replay retained events after this seq first. */
  since?: number;
  onEvent(ev: EventOf<T>): void;
  /** Events the daemon could no longer give (announced, never silent). */
  onGap?(gap: { from: number; to: number }): void;
  /** Errors the daemon sent on the socket (a refused resume), and the final refusal that ends the subscription. */
  onError?(err: Error): void;
  /** A live subscription lost its connection and tries again after `delayMs` (attempt counts from 1). */
  onReconnect?(info: { attempt: number; delayMs: number; reason: string }): void;
  /** Reconnect delay bounds in ms (doubling from min to max). */
  reconnect?: { min: number; max: number };
  /** Batched messages when the daemon offers them (capability `event-batches`; default true): same events either way. */
  batch?: boolean;
  /** Tries to reach the daemon before ready() rejects with IommudConnectionError (default 5). */
  connectAttempts?: number;
}

/**
 * A subscription that fails loudly: a refusal by the daemon (400, 401, 403, 404: a wrong token, an unknown session,
 * a bad filter) is final, at the first connection or at a reconnect; only the loss of a connection that was
 * accepted is retried, with backoff and an `onReconnect` notice. A daemon that is not there at the start is a
 * rejected ready() after `connectAttempts` tries.
 */
export class EventSubscription {
  /** The last seq seen (delivered or covered by a gap): where a reconnect resumes. */
  lastSeq: number;
  private ws: WebSocket | null = null;
  private state: 'connecting' | 'open' | 'closed' = 'connecting';
  private everOpened = false;
  private attempt = 0;
  private delay: number;
  private readonly opened: Promise<void>;
  private readonly ended: Promise<void>;
  private settleOpened!: { resolve(): void; reject(e: Error): void };
  private settleEnded!: { resolve(): void; reject(e: Error): void };

  constructor(
    private readonly url: string,
    private readonly token: string,
    private readonly opts: SubscribeOptions,
  ) {
    this.lastSeq = opts.since ?? -1;
    this.delay = opts.reconnect?.min ?? 50;
    this.opened = new Promise((resolve, reject) => (this.settleOpened = { resolve, reject }));
    this.ended = new Promise((resolve, reject) => (this.settleEnded = { resolve, reject }));
    // Whoever awaits only one of the two must not see the other as an unhandled rejection.
    this.opened.catch(() => {});
    this.ended.catch(() => {});
    this.connect();
  }

  /** Resolves once the first connection is open; rejects with the daemon's refusal or after the connect attempts. */
  ready(): Promise<void> {
    return this.opened;
  }

  /** Resolves when close() is called; rejects when the subscription ends on a refusal or a failed first connect. */
  done(): Promise<void> {
    return this.ended;
  }

  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.ws?.close(1000);
    this.settleEnded.resolve();
  }

  /** Drops the connection as a network failure would (for tests of the resume path). */
  dropConnection(): void {
    this.ws?.terminate();
  }

  private fail(err: Error): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.ws?.terminate();
    if (!this.everOpened) this.settleOpened.reject(err);
    this.opts.onError?.(err);
    this.settleEnded.reject(err);
  }

  /**
   * Asks the daemon for batched messages (capability `event-batches`, docs/events.md) when it offers them, checked
   * at every connection (a daemon restarted at another version may not): an unreachable daemon is asked without.
   */
  private connect(): void {
    if (this.opts.batch === false) return this.open(false);
    void fetch(this.url.replace(/^ws/, 'http').replace(/\/v1\/sessions\/.*$/, '/v1/version'))
      .then(async (res) => (res.ok ? ((await res.json()) as { capabilities?: string[] }).capabilities?.includes('event-batches') === true : false))
      .catch(() => false)
      .then((batch) => {
        if (this.state !== 'closed') this.open(batch);
      });
  }

  private open(batch: boolean): void {
    const q = [`token=${encodeURIComponent(this.token)}`];
    if (batch) q.push('batch=1');
    if (this.opts.types?.length) q.push(`types=${this.opts.types.map(encodeURIComponent).join(',')}`);
    if (this.opts.device) q.push(`device=${encodeURIComponent(this.opts.device)}`);
    if (this.lastSeq >= 0) q.push(`since=${this.lastSeq}`);
    const ws = new WebSocket(`${this.url}?${q.join('&')}`);
    this.ws = ws;
    let refused = false;
    ws.on('unexpected-response', (_req, res) => {
      // The daemon answered the upgrade with an HTTP refusal: its JSON error is the reason, and it is final.
      refused = true;
      void upgradeRefusal(res).then((e) => {
        ws.terminate();
        // 5xx (a proxy whose node is down, a daemon restarting) is not a refusal of this subscription: retry.
        if (e.status >= 500 && this.everOpened) this.retry(`${e.code}: ${e.message}`);
        else this.fail(e);
      });
    });
    ws.on('open', () => {
      this.state = 'open';
      this.everOpened = true;
      this.attempt = 0;
      this.delay = this.opts.reconnect?.min ?? 50;
      this.settleOpened.resolve();
    });
    ws.on('message', (raw) => {
      const m = JSON.parse(String(raw)) as IommudEvent[] | IommudEvent | z.output<typeof S.GapMessage> | z.output<typeof S.SocketErrorMessage>;
      if (Array.isArray(m)) {
        for (const ev of m) this.event(ev);
      } else if (m.type === 'gap') {
        if (m.to > this.lastSeq) this.lastSeq = m.to;
        this.opts.onGap?.({ from: m.from, to: m.to });
      } else if (m.type === 'error') {
        this.opts.onError?.(new IommudError(m.error.code, m.error.message, 400));
      } else this.event(m);
    });
    let lastError = '';
    ws.on('error', (e) => {
      lastError = e.message;
    });
    ws.on('close', (code, reason) => {
      if (this.state === 'closed' || refused) return;
      const why = reason.length ? `${code} ${reason.toString()}` : lastError || `closed (${code})`;
      if (!this.everOpened) {
        this.attempt++;
        if (this.attempt >= (this.opts.connectAttempts ?? 5)) return this.fail(new IommudConnectionError(`cannot subscribe at ${this.url}: ${why}`));
        setTimeout(() => this.state !== 'closed' && this.connect(), this.delay);
        this.delay = Math.min(this.delay * 2, this.opts.reconnect?.max ?? 2000);
        return;
      }
      this.retry(why);
    });
  }

  private event(ev: IommudEvent): void {
    // A replay after reconnect never repeats what was already delivered.
    if (ev.seq <= this.lastSeq) return;
    this.lastSeq = ev.seq;
    this.opts.onEvent(ev);
  }

  private retry(reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'connecting';
    this.attempt++;
    const delayMs = this.delay;
    this.opts.onReconnect?.({ attempt: this.attempt, delayMs, reason });
    setTimeout(() => this.state !== 'closed' && this.connect(), delayMs);
    this.delay = Math.min(this.delay * 2, this.opts.reconnect?.max ?? 2000);
  }

  /** Answers a stall on this socket (needs an operator token). */
  resume(stall: string, action: 'retry' | 'terminate'): void {
    this.ws?.send(JSON.stringify({ type: 'resume', stall, action }));
  }
}

export type { StreamItem };

interface Pending {
  id: number;
  resolve(v: { items: StreamItem[]; data: Uint8Array }): void;
  reject(e: Error): void;
}

/**
 * The binary translate stream: a promise per batch, replies matched in order, at most `maxInFlight` batches in
 * flight (further calls wait for a slot: backpressure instead of an unbounded send buffer).
 */
export class TranslateStream {
  private nextId = 1;
  private readonly pending: Pending[] = [];
  private readonly waiting: Array<() => void> = [];

  private constructor(
    private readonly ws: WebSocket,
    private readonly maxInFlight: number,
  ) {
    ws.on('message', (raw, isBinary) => {
      if (!isBinary) {
        const m = JSON.parse(String(raw)) as { id: number | null; error: { code: string; message: string; details?: Record<string, unknown> } };
        const i = m.id === null ? 0 : this.pending.findIndex((p) => p.id === m.id);
        const p = this.pending.splice(Math.max(0, i), 1)[0];
        p?.reject(new IommudError(m.error.code, m.error.message, 400, m.error.details));
        this.release();
        return;
      }
      // The message's own bytes (a Buffer is a Uint8Array): new Uint8Array(buffer) made a copy of every reply.
      const r = decodeReply(raw as Buffer);
      const p = this.pending.shift();
      if (!p) return;
      if (p.id !== r.id) p.reject(new Error(`stream reply ${r.id} out of order (expected ${p.id})`));
      else p.resolve({ items: r.items, data: r.data });
      this.release();
    });
    ws.on('close', (code, reason) => {
      for (const p of this.pending.splice(0)) p.reject(new IommudConnectionError(`stream closed${reason.length ? `: ${String(reason)}` : ''}`));
    });
  }

  static open(url: string, token: string, maxInFlight: number): Promise<TranslateStream> {
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new TranslateStream(ws, maxInFlight)));
      ws.once('unexpected-response', (_req, res) =>
        void upgradeRefusal(res).then((e) => {
          ws.terminate();
          reject(e);
        }),
      );
      ws.once('error', (e) => reject(new IommudConnectionError(e.message, e)));
    });
  }

  get inFlight(): number {
    return this.pending.length;
  }

  /** Translates a batch of iovas (no data moves); one result per iova, in order. */
  async translate(access: 'read' | 'write' | 'exec', iovas: ArrayLike<number>, opts: { priv?: boolean; mid?: number } = {}): Promise<StreamItem[]> {
    const op = access === 'read' ? OP_TRANSLATE_READ : access === 'write' ? OP_TRANSLATE_WRITE : OP_TRANSLATE_EXEC;
    // The frame takes a copy: a Uint32Array is passed as it is.
    return (await this.send(op, iovas instanceof Uint32Array ? iovas : Uint32Array.from(iovas), opts)).items;
  }

  /** Reads `length` bytes at each iova through the SMMU. */
  async read(items: Array<{ iova: number; length: number }>, opts: { priv?: boolean; mid?: number } = {}): Promise<Array<StreamItem & { data?: Uint8Array }>> {
    const r = await this.send(OP_READ, Uint32Array.from(items.map((x) => x.iova)), opts, Uint32Array.from(items.map((x) => x.length)));
    let o = 0;
    return r.items.map((it, i) => {
      const len = items[i]!.length;
      const out = it.status === 'ok' ? { ...it, data: r.data.subarray(o, o + len) } : it;
      o += len;
      return out;
    });
  }

  /** Writes bytes at each iova through the SMMU. */
  async write(items: Array<{ iova: number; data: Uint8Array }>, opts: { priv?: boolean; mid?: number } = {}): Promise<StreamItem[]> {
    const total = items.reduce((n, x) => n + x.data.length, 0);
    const data = new Uint8Array(total);
    let o = 0;
    for (const x of items) {
      data.set(x.data, o);
      o += x.data.length;
    }
    return (await this.send(OP_WRITE, Uint32Array.from(items.map((x) => x.iova)), opts, Uint32Array.from(items.map((x) => x.data.length)), data)).items;
  }

  /** Reads registers of the device's SMMU window (byte offsets); each item's `paddr` holds the value. */
  async mmioRead(offsets: ArrayLike<number>): Promise<StreamItem[]> {
    return (await this.send(OP_MMIO_READ, Uint32Array.from(offsets), {})).items;
  }

  /** Writes registers, in order, with their hardware side effects; each item's `paddr` holds the value written. */
  async mmioWrite(items: Array<{ offset: number; value: number }>): Promise<StreamItem[]> {
    return (await this.send(OP_MMIO_WRITE, Uint32Array.from(items.map((x) => x.offset)), {}, undefined, undefined, Uint32Array.from(items.map((x) => x.value >>> 0)))).items;
  }

  close(): void {
    this.ws.close(1000);
  }

  private async send(
    op: number,
    iovas: Uint32Array,
    opts: { priv?: boolean; mid?: number },
    lengths?: Uint32Array,
    data?: Uint8Array,
    values?: Uint32Array,
  ): Promise<{ items: StreamItem[]; data: Uint8Array }> {
    // The frame is made at the call (the caller may reuse its arrays at once); its id when it leaves.
    const frame = encodeRequest({ id: 0, op, priv: opts.priv ?? false, mid: opts.mid ?? 0xff, iovas, lengths, data, values });
    while (this.pending.length >= this.maxInFlight) await new Promise<void>((r) => this.waiting.push(r));
    const id = this.nextId++ >>> 0;
    new DataView(frame.buffer).setUint32(4, id, true);
    return new Promise((resolve, reject) => {
      this.pending.push({ id, resolve, reject });
      this.ws.send(frame, { binary: true }, (err) => {
        if (err) reject(new IommudConnectionError(err.message, err));
      });
    });
  }

  private release(): void {
    this.waiting.shift()?.();
  }
}

