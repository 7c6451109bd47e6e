import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
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
});
