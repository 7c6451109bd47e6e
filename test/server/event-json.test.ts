import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameLog, frameText } from '../../src/events/frames.js';
import { eventJson, jsonOut, jsonStart, writeEventJson } from '../../src/events/json.js';
import { Event, type IommuEvent } from '../../src/events/types.js';
import { inputsFor } from '../support/zod-arb.js';

/** The writer's text against JSON.stringify's, as the values they denote (key order is the writer's own). */
function same(v: unknown): void {
  const want = JSON.stringify(v);
  if (want === undefined) return;
  const got = eventJson(v as IommuEvent);
  expect(JSON.parse(got)).toEqual(JSON.parse(want));
}

describe('compiled event JSON writer (src/events/json.ts) against JSON.stringify', () => {
  it('every declared variant, with wrong-typed, missing and extra fields mixed in, denotes what JSON.stringify writes', () => {
    fc.assert(fc.property(inputsFor(Event), (ev) => same(ev)), { numRuns: 1500 });
  });

  it('valid events from a stamp: seq, time and by, ASCII as bytes, everything else from JSON.stringify', () => {
    const stamp = fc.record({ seq: fc.integer({ min: 1, max: 2 ** 40 }), time: fc.date({ noInvalidDate: true }).map((d) => d.toISOString()), by: fc.option(fc.record({ role: fc.constantFrom('observer', 'operator', 'owner'), label: fc.option(fc.string({ unit: 'binary' })) }), { nil: undefined }) });
    fc.assert(
      fc.property(stamp, inputsFor(Event), (st, body) => {
        if (typeof body !== 'object' || body === null || Array.isArray(body)) return;
        same({ ...st, ...body });
      }),
      { numRuns: 2000 },
    );
  });

  it('escapes, lone surrogates, non-ASCII, odd numbers and nested non-plain values', () => {
    const base = { seq: 1, time: '2026-01-01T00:00:00.000Z', type: 'session', action: 'create' };
    for (const session of ['"quoted"', 'back\\slash', 'tab\tnl\n', '\u0000\u001f\u007f', 'äöü €', '\ud800', '\udc00x', '😀', '']) same({ ...base, session });
    for (const seq of [0, -0, 0.5, -1, 2 ** 32, 2 ** 53, 1e21, 1e-7, NaN, Infinity, -Infinity]) same({ ...base, seq, session: 's' });
    same({ ...base, session: 's', by: { role: 'owner', label: null, extra: [1, undefined, () => 1] } });
    same({ ...base, session: 's', by: new Date(0) });
    same({ ...base, session: undefined });
    same({ seq: 2, time: 't', type: 'map', domain: 'd', iova: '0x0', paddr: '0x0', size: 4096, prot: ['read', 7, null], pages: { '4K': 1, '64K': 0, '1M': 0, '16M': 0 } });
    same({ seq: 3, time: 't', type: 'fault', family: 'gart', client: { name: 'x', id: 3 }, smmu: 'g', context: 0, device: null, domain: null });
  });

  it('writes in place after `at`; an event that does not fit moves to a new buffer, after room for a frame header', () => {
    const ev = { seq: 9, time: 't', type: 'session', action: 'create', session: 'x'.repeat(300) } as IommuEvent;
    const target = Buffer.alloc(4096);
    const end = writeEventJson(ev, target, 100);
    expect(jsonOut()).toBe(target);
    expect(jsonStart()).toBe(100);
    expect(JSON.parse(target.toString('utf8', 100, end))).toEqual(ev);
    const small = Buffer.alloc(120);
    const end2 = writeEventJson(ev, small, 100);
    expect(jsonOut()).not.toBe(small);
    expect(JSON.parse(jsonOut().toString('utf8', jsonStart(), end2))).toEqual(ev);
    expect(jsonStart()).toBeGreaterThanOrEqual(10);
  });

  describe('in a frame log, where an event copies the fields it shares with the last one of its type', () => {
    /** Every event's frame, written one after another, against JSON.stringify of the event as it was then. */
    function sameInLog(events: Array<unknown | (() => void)>): void {
      const log = new FrameLog();
      for (const e of events) {
        if (typeof e === 'function') {
          e();
          continue;
        }
        const want = JSON.stringify(e);
        if (want === undefined) continue;
        const start = log.appendEvent(e as IommuEvent);
        expect(JSON.parse(frameText(log.chunk, start, log.used))).toEqual(JSON.parse(want));
      }
    }

    it('mixes of a few events\' fields (same types, shared values, wrong-typed, missing and extra fields, frozen arrays, chunk changes)', () => {
      const pick = fc.record({ a: fc.nat(), b: fc.nat(), mix: fc.array(fc.boolean(), { maxLength: 24 }), sameType: fc.boolean(), seq: fc.nat(), freeze: fc.boolean(), aside: fc.boolean() });
      fc.assert(
        fc.property(fc.array(inputsFor(Event), { minLength: 1, maxLength: 4 }), fc.array(pick, { minLength: 1, maxLength: 40 }), (pool, picks) => {
          const objects = pool.filter((p): p is Record<string, unknown> => typeof p === 'object' && p !== null && !Array.isArray(p));
          if (objects.length === 0) return;
          const events: unknown[] = [];
          for (const p of picks) {
            const a = objects[p.a % objects.length]!;
            const b = objects[p.b % objects.length]!;
            const ev: Record<string, unknown> = {};
            Object.keys(a).forEach((k, i) => (ev[k] = p.mix[i] && k in b ? b[k] : a[k]));
            if (p.sameType) ev.type = objects[0]!.type;
            if (p.seq % 3 !== 0) ev.seq = p.seq;
            for (const k of Object.keys(ev)) if (p.freeze && Array.isArray(ev[k])) Object.freeze(ev[k]);
            events.push(ev);
            // A write outside a log (no copy made from it, none from it later) between two of the log's.
            if (p.aside) events.push(() => eventJson(ev as IommuEvent));
          }
          sameInLog(events);
        }),
        { numRuns: 600 },
      );
    });

    it('a fault burst whose shared objects change between events: what changed is written, not copied', () => {
      const by: { role: string; label: string | null } = { role: 'operator', label: null };
      const bits = ['TF'];
      const frozen = Object.freeze(['TF', 'MULTI']);
      const fault = (seq: number, iova: string, fsrBits: readonly string[]) => ({ seq, time: '2026-01-01T00:00:00.000Z', type: 'fault', smmu: 's', context: 0, device: 'd', domain: null, iova, access: 'read', priv: false, flags: 0, kind: 'translation', family: 'msm', fsr: '0x2', fsrBits, far: '0x1000', fsynr0: '0x0', fsynr1: '0x0', by });
      sameInLog([
        fault(1, '0x1000', bits),
        fault(2, '0x2000', bits),
        () => bits.push('MULTI'),
        fault(3, '0x3000', bits),
        () => (by.label = 'rig "7"'),
        fault(4, '0x3000', frozen),
        fault(5, '0x3000', frozen),
        () => (by.role = 'owner'),
        fault(6, '0x3000', frozen),
        { ...fault(7, '0x4000', frozen), extra: 1 },
        fault(8, '0x4000', frozen),
        { ...fault(9, '0x4000', frozen), seq: undefined },
        fault(10, '0x4000', frozen),
        // No seq: its first field is time, which the next event copies after a seq of its own.
        (({ seq: _, ...rest }) => rest)(fault(0, '0x4000', frozen)),
        fault(11, '0x4000', frozen),
        { seq: 12, time: 't', type: 'session', action: 'create', session: 'x'.repeat(70_000) },
        fault(13, '0x4000', frozen),
        fault(14, '0x4000', frozen),
      ]);
    });
  });
});
