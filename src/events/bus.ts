import type { EventBody, EventSink, EventType, IommuEvent } from './types.js';

export type { IommuEvent };
/** Who caused an event: the token's role and label (API.md: every mutation names its user). */
export type Actor = NonNullable<IommuEvent['by']>;

export type Listener = (ev: IommuEvent) => void;

/**
 * A session's event stream: a monotonic seq, a retained ring for `since` replays and live listeners. Delivery
 * policy (backpressure, gaps) belongs to each subscriber; the bus never blocks a producer.
 */
export class EventBus implements EventSink {
  private seq = 0;
  /** Seq before the first event this bus emitted (a restored session continues from it). */
  private baseSeq = 0;
  /** Retained events at seq % cap; the ring grows (up to `retain`) as events come, so an idle bus is small. */
  private ring: Array<IommuEvent | undefined> = [];
  private cap = 0;
  private readonly listeners = new Set<Listener>();
  private readonly taps = new Set<Listener>();
  actor: Actor | null = null;
  readonly counts = new Map<EventType, number>();

  constructor(readonly retain = 10_000, firstSeq = 0) {
    this.seq = firstSeq;
    this.baseSeq = firstSeq;
  }

  get lastSeq(): number {
    return this.seq;
  }

  /** Oldest seq still retained (lastSeq + 1 when nothing is). */
  get firstRetained(): number {
    return Math.max(1, this.seq - this.retain + 1, this.seq + 1 - this.retainedCount());
  }

  emit(body: EventBody): void {
    const ev = { seq: ++this.seq, time: this.now(), ...body } as IommuEvent;
    if (this.actor) ev.by = this.actor;
    if (this.cap < this.retain && this.seq - 1 - this.baseSeq >= this.cap) this.grow(Math.min(this.retain, Math.max(16, this.cap * 2)), this.seq - 1);
    if (this.cap !== 0) this.ring[this.seq % this.cap] = ev;
    this.counts.set(body.type, (this.counts.get(body.type) ?? 0) + 1);
    for (const l of this.taps) l(ev);
    for (const l of this.listeners) l(ev);
  }

  private lastMs = 0;
  private lastIso = '';

  /** ISO time, formatted once per millisecond (event bursts share it). */
  now(): string {
    const ms = Date.now();
    if (ms !== this.lastMs) {
      this.lastMs = ms;
      this.lastIso = new Date(ms).toISOString();
    }
    return this.lastIso;
  }

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** A listener of the session's own (stall timers, metrics): delivered first, not counted as a subscriber. */
  tap(l: Listener): () => void {
    this.taps.add(l);
    return () => this.taps.delete(l);
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
    for (let s = this.seq + 1, n = 0; s <= seq && n < this.cap; s++, n++) this.ring[s % this.cap] = undefined;
    this.seq = seq;
  }

  /** Retained events with seq > since, in order, and the range lost to the ring before them (if any). */
  replay(since: number): { gap: { from: number; to: number } | null; events: IommuEvent[] } {
    const first = this.firstRetained;
    const events: IommuEvent[] = [];
    for (let s = Math.max(since + 1, first); s <= this.seq; s++) {
      const ev = this.ring[s % this.cap];
      // Numbers withdrawn by advanceTo() hold no event.
      if (ev !== undefined && ev.seq === s) events.push(ev);
    }
    const gap = since + 1 < first ? { from: since + 1, to: first - 1 } : null;
    return { gap, events };
  }

  snapshot(): { seq: number; events: IommuEvent[]; counts: Array<[EventType, number]> } {
    return { seq: this.seq, events: this.replay(0).events, counts: [...this.counts] };
  }

  /** Restores seq and the retained ring (a restored session's subscribers can still replay with since). */
  restore(s: { seq: number; events: IommuEvent[]; counts: Array<[EventType, number]> }): void {
    this.cap = Math.min(this.retain, Math.max(16, s.events.length));
    this.ring = new Array<IommuEvent | undefined>(this.cap).fill(undefined);
    this.seq = s.seq;
    this.baseSeq = s.seq - s.events.length;
    for (const ev of s.events) this.ring[ev.seq % this.cap] = ev;
    this.counts.clear();
    for (const [t, n] of s.counts) this.counts.set(t, n);
  }

  /** Events by seq (used by a subscriber catching up after falling behind). */
  get(seq: number): IommuEvent | undefined {
    if (seq < this.firstRetained || seq > this.seq) return undefined;
    return this.ring[seq % this.cap];
  }

  /** Moves the retained events up to seq `last` into a ring of `cap` slots. */
  private grow(cap: number, last: number): void {
    const ring = new Array<IommuEvent | undefined>(cap).fill(undefined);
    for (let s = Math.max(this.baseSeq + 1, last - this.cap + 1); s <= last; s++) ring[s % cap] = this.ring[s % this.cap];
    this.ring = ring;
    this.cap = cap;
  }

  private retainedCount(): number {
    return Math.min(this.seq - this.baseSeq, this.retain);
  }
}
