import { describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { EventBus, type IommuEvent } from '../../src/events/bus.js';
import { textFrame } from '../../src/events/frames.js';
import { eventJson } from '../../src/events/json.js';
import type { EventBody, EventOf } from '../../src/events/types.js';

/**
 * The retained ring against a model: a list of (seq, text at emit) of which the last `retain` numbers are kept.
 * While nobody subscribes, the bus keeps map and unmap events given as values (emitMap, emitUnmap) as those values
 * and other events as objects; while someone does, it keeps frames. The model writes a map or unmap given as values
 * as the event API.md describes (hex addresses, the ISO time of the clock's ms at emit). Whatever it kept, every read (replay from a seq, gaps, get, frames, snapshot)
 * must be what the model says.
 */

const ACTORS = [null, { role: 'operator' as const, label: 'rig-1' }, { role: 'owner' as const, label: null }];
const PROT = [['read'], ['read', 'write'], ['write', 'noexec']] as const;
const PAGES = { '4K': 8, '64K': 0, '1M': 0, '16M': 0 };

/** A body of each shape the ring treats differently: packed map/unmap, odd ones it must keep as objects, others. */
const body = fc.oneof(
  fc.record({ iova: fc.nat(0xfffff), paddr: fc.nat(0xfffff), size: fc.nat(2 ** 33), prot: fc.constantFrom(...PROT), dom: fc.nat(3) }).map(
    (r) => ({ type: 'map', domain: `dom-${r.dom}`, iova: `0x${(r.iova * 4096).toString(16)}`, paddr: `0x${(r.paddr * 4096).toString(16)}`, size: r.size, prot: [...r.prot], pages: r.dom ? PAGES : { '4K': 1, '64K': 2, '1M': 0, '16M': 0 } }) as EventBody,
  ),
  fc.record({ iova: fc.nat(0xfffff), size: fc.nat(2 ** 33), unmapped: fc.nat(2 ** 20), dom: fc.nat(3) }).map(
    (r) => ({ type: 'unmap', domain: `dom-${r.dom}`, iova: `0x${(r.iova * 4096).toString(16)}`, size: r.size, unmapped: r.unmapped }) as EventBody,
  ),
  // Shapes json.ts writes by the generic rules or with a field left out: an extra key, an undefined field, a
  // missing one, a value of another type than declared, an object that is not plain.
  fc.constantFrom(
    () => ({ type: 'map', domain: 'dom-1', iova: '0x1000', paddr: '0x2000', size: 4096, prot: ['read'], pages: PAGES, extra: 1 }),
    () => ({ type: 'map', domain: 'dom-1', iova: '0x1000', paddr: undefined, size: 4096, prot: ['read'], pages: PAGES }),
    () => ({ type: 'map', domain: 'dom-1', iova: '0x1000', size: 4096, prot: ['read'], pages: PAGES }),
    () => ({ type: 'unmap', domain: 'dom-1', iova: 4096, size: '4096', unmapped: 4096 }),
    () => ({ type: 'unmap', domain: 'dom-2', iova: '0x1000', size: 4096, unmapped: 4096, by: undefined }),
    () => ({ type: 'unmap', domain: 'dom-2', iova: '0x1000', size: 4096 }),
    () => Object.assign(Object.create({ inherited: true }) as object, { type: 'unmap', domain: 'dom-2', iova: '0x1000', size: 4096, unmapped: 4096 }),
    () => ({ type: 'session', action: 'create', session: 's-1' }),
    () => ({ type: 'detach', domain: 'dom-1', device: 'dev0' }),
  ).map((f) => f() as unknown as EventBody),
);

/** A map or unmap given as values, and the clock's ms when it is emitted. */
const values = fc.oneof(
  fc.record({
    kind: fc.constant('map' as const),
    iova: fc.oneof(fc.nat(0xfffff).map((n) => n * 4096), fc.nat(0xffff), fc.constant(2 ** 33 + 4096)),
    paddr: fc.oneof(fc.nat(0xfffff).map((n) => n * 4096), fc.nat(0xff)),
    size: fc.oneof(fc.nat(2 ** 33), fc.constant(0x8000)),
    prot: fc.constantFrom(...PROT),
    dom: fc.nat(3),
    ms: fc.integer({ min: 0, max: 4102444800000 }),
  }),
  fc.record({
    kind: fc.constant('unmap' as const),
    iova: fc.oneof(fc.nat(0xfffff).map((n) => n * 4096), fc.nat(0xffff)),
    size: fc.nat(2 ** 33),
    unmapped: fc.nat(2 ** 20),
    dom: fc.nat(3),
    ms: fc.integer({ min: 0, max: 4102444800000 }),
  }),
);
type Values = typeof values extends fc.Arbitrary<infer T> ? T : never;

const hexOf = (n: number): string => `0x${n.toString(16)}`;

/** Emits v as values with the clock at v.ms; its text as the model writes it. */
function emitValues(bus: EventBus, v: Values, actor: IommuEvent['by'] | null): [number, string] {
  const now = vi.spyOn(Date, 'now').mockReturnValue(v.ms);
  const prot = v.kind === 'map' ? ([...v.prot] as EventOf<'map'>['prot']) : [];
  const pages = v.dom ? PAGES : { '4K': 1, '64K': 2, '1M': 0, '16M': 0 };
  if (v.kind === 'map') bus.emitMap(`dom-${v.dom}`, v.iova, v.paddr, v.size, prot, pages);
  else bus.emitUnmap(`dom-${v.dom}`, v.iova, v.size, v.unmapped);
  now.mockRestore();
  const seq = bus.lastSeq;
  const time = new Date(v.ms).toISOString();
  const ev =
    v.kind === 'map'
      ? { type: 'map', domain: `dom-${v.dom}`, iova: hexOf(v.iova), paddr: hexOf(v.paddr), size: v.size, prot, pages, seq, time }
      : { type: 'unmap', domain: `dom-${v.dom}`, iova: hexOf(v.iova), size: v.size, unmapped: v.unmapped, seq, time };
  return [seq, eventJson((actor ? { ...ev, by: actor } : ev) as IommuEvent)];
}

type Op =
  | { op: 'emit'; body: EventBody }
  | { op: 'values'; v: Values }
  | { op: 'actor'; i: number }
  | { op: 'subscribe' }
  | { op: 'unsubscribe' }
  | { op: 'advance'; by: number }
  | { op: 'read'; since: number };

const ops = fc.array(
  fc.oneof(
    { weight: 8, arbitrary: body.map((b): Op => ({ op: 'emit', body: b })) },
    { weight: 8, arbitrary: values.map((v): Op => ({ op: 'values', v })) },
    { weight: 1, arbitrary: fc.nat(2).map((i): Op => ({ op: 'actor', i })) },
    { weight: 1, arbitrary: fc.constant<Op>({ op: 'subscribe' }) },
    { weight: 1, arbitrary: fc.constant<Op>({ op: 'unsubscribe' }) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 5 }).map((by): Op => ({ op: 'advance', by })) },
    { weight: 2, arbitrary: fc.integer({ min: -1, max: 120 }).map((since): Op => ({ op: 'read', since })) },
  ),
  { maxLength: 150 },
);

/** Every read of the ring, checked against the model's retained texts. */
function check(bus: EventBus, model: Map<number, string>, retain: number, since: number, counts: Map<string, number>): void {
  // Counts per type, in the order the types first came.
  expect([...bus.counts]).toEqual([...counts]);
  const last = bus.lastSeq;
  const first = Math.max(1, last - retain + 1);
  expect(bus.firstRetained).toBe(first);
  const want = [...model].filter(([seq]) => seq > since && seq >= first).sort((a, b) => a[0] - b[0]);
  const gap = since + 1 < first ? { from: since + 1, to: first - 1 } : null;
  const { gap: g, frames } = bus.retained(since);
  expect(g).toEqual(gap);
  expect(frames.map((f) => [f.seq, Buffer.from(f.chunk.subarray(f.start, f.end)).toString('latin1')])).toEqual(want.map(([seq, t]) => [seq, textFrame(t).toString('latin1')]));
  expect(bus.replay(since)).toEqual({ gap, events: want.map(([, t]) => JSON.parse(t) as IommuEvent) });
  for (let s = since; s <= last + 1; s++) {
    const text = s >= first ? model.get(s) : undefined;
    expect(bus.get(s)).toEqual(text === undefined ? undefined : JSON.parse(text));
  }
}

describe('the retained ring (map and unmap events kept as values while nobody subscribes)', () => {
  it('replay, gaps, get, frames and snapshot are the model\'s for any mix of events, subscribers, actors and withdrawn numbers', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), ops, (retain, list) => {
        const bus = new EventBus(retain);
        const model = new Map<number, string>();
        const counts = new Map<string, number>();
        const count = (type: string) => counts.set(type, (counts.get(type) ?? 0) + 1);
        let unsubscribe: (() => void) | null = null;
        for (const o of list) {
          if (o.op === 'emit') {
            const b = o.body;
            bus.emit(b);
            count(b.type);
            const ev = b as IommuEvent;
            model.set(ev.seq, eventJson(ev));
            for (const s of model.keys()) if (s <= ev.seq - retain) model.delete(s);
          } else if (o.op === 'values') {
            const [seq, text] = emitValues(bus, o.v, bus.actor);
            count(o.v.kind);
            model.set(seq, text);
            for (const s of model.keys()) if (s <= seq - retain) model.delete(s);
          } else if (o.op === 'actor') bus.actor = ACTORS[o.i]!;
          else if (o.op === 'subscribe') unsubscribe ??= bus.subscribe(() => {});
          else if (o.op === 'unsubscribe') {
            unsubscribe?.();
            unsubscribe = null;
          } else if (o.op === 'advance') bus.advanceTo(bus.lastSeq + o.by);
          else check(bus, model, retain, o.since, counts);
        }
        check(bus, model, retain, 0, counts);
        const snap = bus.snapshot();
        expect(snap.seq).toBe(bus.lastSeq);
        expect(snap.events).toEqual(bus.replay(0).events);
        expect(snap.counts).toEqual([...counts]);
        // A bus restored from the snapshot counts on from it.
        const again = new EventBus(retain);
        again.restore(snap);
        again.emitUnmap('dom-1', 0x1000, 4096, 4096);
        count('unmap');
        expect([...again.counts]).toEqual([...counts]);
      }),
      { numRuns: 300 },
    );
  });

  it('keeps no event object for a map or unmap given as values while nobody reads the bus, and encodes each one once when read', () => {
    const bus = new EventBus(100);
    bus.actor = ACTORS[1]!;
    // A tap of other types does not read them.
    const tapped: IommuEvent[] = [];
    bus.tap((ev) => void tapped.push(ev), ['fault', 'resume']);
    for (let i = 0; i < 50; i++) {
      bus.emitMap('dom-1', 0x1000, 0x2000, 4096, ['read'], PAGES);
      bus.emitUnmap('dom-1', 0x1000, 4096, 4096);
    }
    const ring = bus as unknown as { ringEvent: unknown[]; ringVal: unknown[] };
    expect(ring.ringEvent.filter((e) => e !== undefined)).toEqual([]);
    // Only objects the producer holds: domain, prot, pages, actor.
    expect(ring.ringVal.every((v) => v === undefined || v === 'dom-1' || v === PAGES || v === ACTORS[1] || (Array.isArray(v) && v[0] === 'read'))).toBe(true);
    expect(tapped).toEqual([]);
    // Read twice: the second read gives the frames the first one wrote, not new ones.
    const a = bus.retained(0).frames;
    const b = bus.retained(0).frames;
    expect(b.length).toBe(100);
    expect(b.every((f, i) => f.chunk === a[i]!.chunk && f.start === a[i]!.start && f.end === a[i]!.end)).toBe(true);
    expect(bus.get(100)).toEqual({ seq: 100, time: bus.get(99)!.time, type: 'unmap', domain: 'dom-1', iova: '0x1000', size: 4096, unmapped: 4096, by: ACTORS[1] });
  });

  it('hands a map or unmap given as values to a subscriber or a tap of its type as the event', () => {
    const bus = new EventBus(10);
    const tapped: string[] = [];
    const untap = bus.tap((ev) => void tapped.push(`${ev.seq} ${ev.type} ${String((ev as { iova?: unknown }).iova)}`), ['unmap']);
    bus.emitMap('dom-1', 0x1000, 0x2000, 4096, ['read'], PAGES);
    bus.emitUnmap('dom-1', 0x1000, 4096, 4096);
    untap();
    bus.emitUnmap('dom-1', 0x3000, 4096, 4096);
    const heard: IommuEvent[] = [];
    const off = bus.subscribe((ev) => void heard.push(ev));
    bus.emitMap('dom-2', 0x40100000, 0x80000000, 0x8000, ['read', 'write'], PAGES);
    off();
    expect(tapped).toEqual(['2 unmap 0x1000']);
    expect(heard).toEqual([{ type: 'map', domain: 'dom-2', iova: '0x40100000', paddr: '0x80000000', size: 0x8000, prot: ['read', 'write'], pages: PAGES, seq: 4, time: heard[0]!.time }]);
    expect(bus.replay(0).events.map((e) => [e.seq, e.type, (e as { iova?: unknown }).iova])).toEqual([
      [1, 'map', '0x1000'],
      [2, 'unmap', '0x1000'],
      [3, 'unmap', '0x3000'],
      [4, 'map', '0x40100000'],
    ]);
  });
});
