import { hex } from '../errors.js';
import { FrameLog, frameText } from './frames.js';
import type { EventBody, EventOf, EventSink, EventType, IommuEvent } from './types.js';

export type { IommuEvent };
/** Who caused an event: the token's role and label (API.md: every mutation names its user). */
export type Actor = NonNullable<IommuEvent['by']>;

/**
 * A listener gets the event and its frame: bytes [start, end) of `chunk` (see ./frames.ts), valid for good (the log
 * never overwrites them), the same bytes for every listener. A tap called while nobody subscribes gets an empty
 * frame (the event is not encoded then).
 */
export type Listener = (ev: IommuEvent, chunk: Buffer, start: number, end: number) => void;

/** A retained event as the events socket replays it: its seq and its frame. */
export interface RetainedFrame {
  seq: number;
  chunk: Buffer;
  start: number;
  end: number;
}

/**
 * A session's event stream: a monotonic seq, a retained ring for `since` replays and live listeners. Delivery
 * policy (backpressure, gaps) belongs to each subscriber; the bus never blocks a producer. Each event is encoded
 * once, as it is emitted, into a frame of the session's FrameLog; the ring keeps where the frames are, not the
 * event objects (10,000 retained objects each survived the young generation and made every scavenge copy them).
 */
/**
 * A burst ends by itself after this many events: a stream batch or an access-batch of thousands of faults leaves
 * in parts as it runs, so no event waits for more than this many events' work after it before it is sent.
 */
export const BURST_MAX = 256;

/** A ring slot whose event is kept as an object, not yet encoded. */
const LAZY = Buffer.alloc(0);
/**
 * Ring slots whose map or unmap event was given as values (emitMap, emitUnmap) while nobody read the bus: a DMA
 * map/unmap loop with nobody subscribed emits them by the million. They are kept as numbers (iova, paddr or
 * unmapped, size, the time's ms in ringNum) and objects the producer already holds (domain id, shared prot and
 * page-count objects, the actor in ringVal), and formatted only when read: no event object, no hex strings, no
 * ISO time per event (~16 % of the loop). 10,000 kept event objects had outlived the young generation, so V8
 * pretenured the producer's allocation site and the whole process ran slower.
 */
const PACKED_MAP = Buffer.alloc(0);
const PACKED_UNMAP = Buffer.alloc(0);
/** Values per ring slot in ringVal: domain, prot, pages, by. */
const VALS = 4;
/** Numbers per ring slot in ringNum: iova, paddr (a map's) or unmapped (an unmap's), size, time in ms. */
const NUMS = 4;
const NO_VALS: unknown[] = [];
const NO_NUMS = new Float64Array(0);
/** Frame offsets of a ring with no slot yet (never written: grow() replaces them). */
const NO_OFFSETS = new Int32Array(0);
/** Slots of a ring's first growth: most sessions keep only their `create` event (16 cost 4 arrays of 16). */
const FIRST_RING = 4;

let lastMs = 0;
let lastIso = '';

/** ISO time, formatted once per millisecond and shared by every bus (event bursts and session creations). */
export function isoNow(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

/** The ISO time of `ms` (formatted once per millisecond, as isoNow's). */
function isoAt(ms: number): string {
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

type MapProt = EventOf<'map'>['prot'];
type MapPages = EventOf<'map'>['pages'];

/** The map event of these values (EventBus.emitMap keeps them as they are; its ring formats them alike). */
export function mapEvent(domain: string, iova: number, paddr: number, size: number, prot: MapProt, pages: MapPages): EventBody {
  return { type: 'map', domain, iova: hex(iova), paddr: hex(paddr), size, prot, pages };
}

/** The unmap event of these values (see mapEvent). */
export function unmapEvent(domain: string, iova: number, size: number, unmapped: number): EventBody {
  return { type: 'unmap', domain, iova: hex(iova), size, unmapped };
}

/** Emits a map event to `sink`: a sink with emitMap (EventBus) takes the values, any other the event. */
export function emitMap(sink: EventSink, domain: string, iova: number, paddr: number, size: number, prot: MapProt, pages: MapPages): void {
  if (sink.emitMap) sink.emitMap(domain, iova, paddr, size, prot, pages);
  else sink.emit(mapEvent(domain, iova, paddr, size, prot, pages));
}

/** Emits an unmap event to `sink` (see emitMap). */
export function emitUnmap(sink: EventSink, domain: string, iova: number, size: number, unmapped: number): void {
  if (sink.emitUnmap) sink.emitUnmap(domain, iova, size, unmapped);
  else sink.emit(unmapEvent(domain, iova, size, unmapped));
}

export class EventBus implements EventSink {
  private seq = 0;
  /** Seq before the first event this bus emitted (a restored session continues from it). */
  private baseSeq = 0;
  /** Retained frames at seq % cap (chunk undefined: no event); grows (up to `retain`) as events come. */
  private ringChunk: Array<Buffer | undefined> = [];
  private ringStart = NO_OFFSETS;
  private ringEnd = NO_OFFSETS;
  /** Events kept unencoded (their slot's chunk is LAZY): emitted while nobody subscribed. */
  private ringEvent: Array<IommuEvent | undefined> = [];
  /** Values of packed slots (PACKED_MAP, PACKED_UNMAP): VALS objects and NUMS numbers per slot, allocated with the first one. */
  private ringVal = NO_VALS;
  private ringNum = NO_NUMS;
  private cap = 0;
  private readonly log = new FrameLog();
  private readonly listeners = new Set<Listener>();
  /** What subscribers hold for a burst's end (see endBurst). */
  private readonly flushes = new Set<() => void>();
  private readonly taps = new Set<Listener>();
  /** Taps of some event types only (tap's `types`), by type. */
  private readonly typeTaps = new Map<EventType, Set<Listener>>();
  /** Events emitted to subscribers since the last endBurst(). */
  private burst = 0;
  actor: Actor | null = null;
  private readonly typeCounts = new Map<EventType, number>();
  /** Maps and unmaps kept as values not yet added to typeCounts (a Map.set per event was ~1 % of a DMA map+unmap). */
  private uncountedMaps = 0;
  private uncountedUnmaps = 0;
  /** Whether a map / an unmap has nobody to hand its event object to now (see unread), updated as listeners come and go. */
  private mapUnread = true;
  private unmapUnread = true;
  /** The seq and time (ms) of the last event stamped (timeSince). */
  private stampSeq = -1;
  private stampMs = 0;

  constructor(readonly retain = 10_000, firstSeq = 0) {
    this.seq = firstSeq;
    this.baseSeq = firstSeq;
  }

  /** Events emitted per type, in the order the types first came. */
  get counts(): Map<EventType, number> {
    if (this.uncountedMaps !== 0) this.typeCounts.set('map', this.typeCounts.get('map')! + this.uncountedMaps);
    if (this.uncountedUnmaps !== 0) this.typeCounts.set('unmap', this.typeCounts.get('unmap')! + this.uncountedUnmaps);
    this.uncountedMaps = this.uncountedUnmaps = 0;
    return this.typeCounts;
  }

  get lastSeq(): number {
    return this.seq;
  }

  /** Oldest seq still retained (lastSeq + 1 when nothing is). */
  get firstRetained(): number {
    return Math.max(1, this.seq - this.retain + 1, this.seq + 1 - this.retainedCount());
  }

  /**
   * The body becomes the event: stamped in place, not copied (every producer hands over a fresh object; at fault
   * rates the copy of a fault's 17 fields was one of the fault path's two copies).
   */
  emit(body: EventBody): void {
    const ev = body as IommuEvent;
    ev.seq = ++this.seq;
    ev.time = this.now();
    this.stampSeq = this.seq;
    this.stampMs = lastMs;
    if (this.actor) ev.by = this.actor;
    if (this.cap < this.retain && this.seq - 1 - this.baseSeq >= this.cap) this.grow(Math.min(this.retain, Math.max(FIRST_RING, this.cap * 2)), this.seq - 1);
    this.typeCounts.set(body.type, (this.typeCounts.get(body.type) ?? 0) + 1);
    if (this.listeners.size === 0) {
      // Nobody subscribes: the event is kept as it is and encoded only if a subscriber or a snapshot asks for it
      // (a DMA map/unmap loop pays no encoding). Taps get no frame then.
      if (this.cap !== 0) this.keepLazy(this.seq, ev);
      for (const l of this.taps) l(ev, LAZY, 0, 0);
      if (this.typeTaps.size !== 0) this.typeTapped(ev, LAZY, 0, 0);
      return;
    }
    const log = this.log;
    const start = log.appendEvent(ev);
    const chunk = log.chunk;
    const end = log.used;
    if (this.cap !== 0) this.keep(this.seq, chunk, start, end);
    for (const l of this.taps) l(ev, chunk, start, end);
    if (this.typeTaps.size !== 0) this.typeTapped(ev, chunk, start, end);
    for (const l of this.listeners) l(ev, chunk, start, end);
    // A burst ends at the end of the event loop's turn at the latest, at a producer's endBurst(), or at BURST_MAX.
    if (this.burst++ === 0) process.nextTick(this.endOfTurn);
    if (this.burst === BURST_MAX) this.endBurst();
  }

  private readonly endOfTurn = (): void => {
    if (this.burst !== 0) this.endBurst();
  };

  private typeTapped(ev: IommuEvent, chunk: Buffer, start: number, end: number): void {
    const t = this.typeTaps.get(ev.type);
    if (t) for (const l of t) l(ev, chunk, start, end);
  }

  private keepLazy(seq: number, ev: IommuEvent): void {
    const i = seq % this.cap;
    this.ringChunk[i] = LAZY;
    this.ringEvent[i] = ev;
  }

  /** True when an event of this type has nobody to hand its object to now: it can be kept as values. */
  private unread(type: EventType): boolean {
    return this.listeners.size === 0 && this.taps.size === 0 && !this.typeTaps.has(type);
  }

  /** Called when a listener or tap comes or goes. */
  private heard(): void {
    this.mapUnread = this.unread('map');
    this.unmapUnread = this.unread('unmap');
  }

  /**
   * Emits mapEvent(...) of these values: kept as the values while nobody would read the event now (formatted when
   * the ring is read: the same bytes as the event's), emitted as the event otherwise.
   */
  emitMap(domain: string, iova: number, paddr: number, size: number, prot: MapProt, pages: MapPages): void {
    if (!this.mapUnread) return this.emit(mapEvent(domain, iova, paddr, size, prot, pages));
    const i = this.packSlot('map', domain);
    if (i < 0) return;
    this.ringChunk[i] = PACKED_MAP;
    const v = this.ringVal;
    v[i * VALS + 1] = prot;
    v[i * VALS + 2] = pages;
    const n = this.ringNum;
    const at = i * NUMS;
    n[at] = iova;
    n[at + 1] = paddr;
    n[at + 2] = size;
  }

  /** Emits unmapEvent(...) of these values (see emitMap). */
  emitUnmap(domain: string, iova: number, size: number, unmapped: number): void {
    if (!this.unmapUnread) return this.emit(unmapEvent(domain, iova, size, unmapped));
    const i = this.packSlot('unmap', domain);
    if (i < 0) return;
    this.ringChunk[i] = PACKED_UNMAP;
    const n = this.ringNum;
    const at = i * NUMS;
    n[at] = iova;
    n[at + 1] = unmapped;
    n[at + 2] = size;
  }

  /** emit()'s numbering, counting and stamping of a packed event; its ring slot (-1: the ring keeps none). */
  private packSlot(type: 'map' | 'unmap', domain: string): number {
    const seq = ++this.seq;
    const ms = Date.now();
    this.stampSeq = seq;
    this.stampMs = ms;
    if (this.cap < this.retain && seq - 1 - this.baseSeq >= this.cap) this.grow(Math.min(this.retain, Math.max(FIRST_RING, this.cap * 2)), seq - 1);
    // Counted in typeCounts at the next read of counts; the type takes its place in the order now.
    if (type === 'map') {
      if (this.uncountedMaps++ === 0 && !this.typeCounts.has('map')) this.typeCounts.set('map', 0);
    } else if (this.uncountedUnmaps++ === 0 && !this.typeCounts.has('unmap')) this.typeCounts.set('unmap', 0);
    if (this.cap === 0) return -1;
    if (this.ringVal === NO_VALS) {
      this.ringVal = new Array<unknown>(this.cap * VALS).fill(undefined);
      this.ringNum = new Float64Array(this.cap * NUMS);
    }
    const i = seq % this.cap;
    this.ringEvent[i] = undefined;
    this.ringVal[i * VALS] = domain;
    this.ringVal[i * VALS + 3] = this.actor;
    this.ringNum[i * NUMS + 3] = ms;
    return i;
  }

  /** The event a packed slot holds, rebuilt with the keys (in their order) emit() gives it. */
  private unpack(i: number, seq: number, map: boolean): IommuEvent {
    const v = this.ringVal;
    const at = i * VALS;
    const n = this.ringNum;
    const an = i * NUMS;
    const time = isoAt(n[an + 3]!);
    const ev = (
      map
        ? { type: 'map', domain: v[at], iova: hex(n[an]!), paddr: hex(n[an + 1]!), size: n[an + 2], prot: v[at + 1], pages: v[at + 2], seq, time }
        : { type: 'unmap', domain: v[at], iova: hex(n[an]!), size: n[an + 2], unmapped: n[an + 1], seq, time }
    ) as IommuEvent;
    if (v[at + 3]) ev.by = v[at + 3] as Actor;
    return ev;
  }

  /** The frame of ring slot `seq`, encoding a lazily kept event now. */
  private frameAt(seq: number): Buffer | undefined {
    const i = seq % this.cap;
    const chunk = this.ringChunk[i];
    let ev: IommuEvent;
    if (chunk === LAZY) {
      ev = this.ringEvent[i]!;
      this.ringEvent[i] = undefined;
    } else if (chunk === PACKED_MAP || chunk === PACKED_UNMAP) ev = this.unpack(i, seq, chunk === PACKED_MAP);
    else return chunk;
    this.ringStart[i] = this.log.appendEvent(ev);
    this.ringEnd[i] = this.log.used;
    return (this.ringChunk[i] = this.log.chunk);
  }

  private keep(seq: number, chunk: Buffer | undefined, start: number, end: number): void {
    const i = seq % this.cap;
    this.ringEvent[i] = undefined;
    this.ringChunk[i] = chunk;
    this.ringStart[i] = start;
    this.ringEnd[i] = end;
  }

  /** ISO time, formatted once per millisecond (isoNow). */
  now(): string {
    return isoNow();
  }

  /**
   * The time of the last event when it came after `seq` (a command's record takes its own last event's time: the
   * clock is read once per command, ~0.1 µs here), else now.
   */
  timeSince(seq: number): string {
    return this.stampSeq > seq ? isoAt(this.stampMs) : isoNow();
  }

  /** `flush` (optional) sends what the listener holds of the burst so far: called when a burst ends (endBurst). */
  subscribe(l: Listener, flush?: () => void): () => void {
    this.listeners.add(l);
    if (flush) this.flushes.add(flush);
    this.heard();
    return () => {
      this.listeners.delete(l);
      if (flush) this.flushes.delete(flush);
      this.heard();
    };
  }

  /**
   * The burst ends: subscribers send what they hold. A producer calls it when a unit of work is done (one stream
   * batch), so its events leave now rather than at the end of the event loop's turn, which may hold many more such
   * units (all the requests one socket read brought): a batch's events wait for that batch only.
   */
  endBurst(): void {
    this.burst = 0;
    for (const f of this.flushes) f();
  }

  /**
   * A listener of the session's own (stall timers, metrics): delivered first, not counted as a subscriber. With
   * `types`, it gets events of those types only (map and unmap events left out can be kept as values).
   */
  tap(l: Listener, types?: readonly EventType[]): () => void {
    if (!types) {
      this.taps.add(l);
      this.heard();
      return () => {
        this.taps.delete(l);
        this.heard();
      };
    }
    for (const t of types) {
      let set = this.typeTaps.get(t);
      if (!set) this.typeTaps.set(t, (set = new Set()));
      set.add(l);
    }
    this.heard();
    return () => {
      for (const t of types) {
        const set = this.typeTaps.get(t);
        if (set?.delete(l) && set.size === 0) this.typeTaps.delete(t);
      }
      this.heard();
    };
  }

  get subscriberCount(): number {
    return this.listeners.size;
  }

  /**
   * Numbers up to `seq` are never given again: the events of a change that was undone (a journal failure) were
   * already delivered under them. The numbers in between stay unused (a replay skips them).
   */
  advanceTo(seq: number): void {
    if (seq <= this.seq) return;
    // The ring grows to hold the numbers it skips first: clearing them in a ring not yet grown to `retain` slots
    // cleared the slots of events it still retained.
    if (this.cap < this.retain && seq - this.baseSeq > this.cap) this.grow(Math.min(this.retain, Math.max(FIRST_RING, this.cap * 2, seq - this.baseSeq)), this.seq);
    for (let s = this.seq + 1, n = 0; s <= seq && n < this.cap; s++, n++) this.ringChunk[s % this.cap] = this.ringEvent[s % this.cap] = undefined;
    this.seq = seq;
  }

  /** Retained frames with seq > since, in order, and the range lost to the ring before them (if any). */
  retained(since: number): { gap: { from: number; to: number } | null; frames: RetainedFrame[] } {
    const first = this.firstRetained;
    const frames: RetainedFrame[] = [];
    for (let s = Math.max(since + 1, first); s <= this.seq; s++) {
      const i = s % this.cap;
      const chunk = this.frameAt(s);
      // Numbers withdrawn by advanceTo() hold no event.
      if (chunk !== undefined) frames.push({ seq: s, chunk, start: this.ringStart[i]!, end: this.ringEnd[i]! });
    }
    const gap = since + 1 < first ? { from: since + 1, to: first - 1 } : null;
    return { gap, frames };
  }

  /** Retained events with seq > since, in order, and the range lost to the ring before them (if any). */
  replay(since: number): { gap: { from: number; to: number } | null; events: IommuEvent[] } {
    const { gap, frames } = this.retained(since);
    return { gap, events: frames.map((f) => JSON.parse(frameText(f.chunk, f.start, f.end)) as IommuEvent) };
  }

  snapshot(): { seq: number; events: IommuEvent[]; counts: Array<[EventType, number]> } {
    return { seq: this.seq, events: this.replay(0).events, counts: [...this.counts] };
  }

  /** Restores seq and the retained ring (a restored session's subscribers can still replay with since). */
  restore(s: { seq: number; events: IommuEvent[]; counts: Array<[EventType, number]> }): void {
    this.cap = Math.min(this.retain, Math.max(16, s.events.length));
    this.ringChunk = new Array<Buffer | undefined>(this.cap).fill(undefined);
    this.ringStart = new Int32Array(this.cap);
    this.ringEnd = new Int32Array(this.cap);
    this.ringEvent = new Array<IommuEvent | undefined>(this.cap).fill(undefined);
    this.ringVal = NO_VALS;
    this.ringNum = NO_NUMS;
    this.seq = s.seq;
    this.baseSeq = s.seq - s.events.length;
    this.stampSeq = -1;
    for (const ev of s.events) {
      const start = this.log.appendEvent(ev);
      this.keep(ev.seq, this.log.chunk, start, this.log.used);
    }
    this.uncountedMaps = this.uncountedUnmaps = 0;
    this.typeCounts.clear();
    for (const [t, n] of s.counts) this.typeCounts.set(t, n);
  }

  /** The retained event of that seq (parsed from its frame). */
  get(seq: number): IommuEvent | undefined {
    if (seq < this.firstRetained || seq > this.seq) return undefined;
    const i = seq % this.cap;
    const chunk = this.frameAt(seq);
    return chunk && (JSON.parse(frameText(chunk, this.ringStart[i]!, this.ringEnd[i]!)) as IommuEvent);
  }

  /** Moves the retained frames up to seq `last` into a ring of `cap` slots. */
  private grow(cap: number, last: number): void {
    const chunks = new Array<Buffer | undefined>(cap).fill(undefined);
    const starts = new Int32Array(cap);
    const ends = new Int32Array(cap);
    const events = new Array<IommuEvent | undefined>(cap).fill(undefined);
    const vals = this.ringVal === NO_VALS ? NO_VALS : new Array<unknown>(cap * VALS).fill(undefined);
    const nums = this.ringNum === NO_NUMS ? NO_NUMS : new Float64Array(cap * NUMS);
    for (let s = Math.max(this.baseSeq + 1, last - this.cap + 1); s <= last; s++) {
      const from = s % this.cap;
      const to = s % cap;
      chunks[to] = this.ringChunk[from];
      events[to] = this.ringEvent[from];
      starts[to] = this.ringStart[from]!;
      ends[to] = this.ringEnd[from]!;
      if (vals !== NO_VALS) {
        for (let k = 0; k < VALS; k++) vals[to * VALS + k] = this.ringVal[from * VALS + k];
        for (let k = 0; k < NUMS; k++) nums[to * NUMS + k] = this.ringNum[from * NUMS + k]!;
      }
    }
    this.ringVal = vals;
    this.ringNum = nums;
    this.ringChunk = chunks;
    this.ringStart = starts;
    this.ringEnd = ends;
    this.ringEvent = events;
    this.cap = cap;
  }

  private retainedCount(): number {
    return Math.min(this.seq - this.baseSeq, this.retain);
  }
}
