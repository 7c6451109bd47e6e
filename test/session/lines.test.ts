/**
 * The in-memory trace's store (src/session/lines.ts): lines come back exactly as pushed, in order, whatever their
 * characters and lengths (across chunk boundaries, longer than a chunk), and `bytes` is their UTF-8 with newlines.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JsonLines } from '../../src/session/lines.js';

const utf8 = (lines: string[]) => lines.reduce((n, l) => n + Buffer.byteLength(l) + 1, 0);

describe('JsonLines', () => {
  it('holds nothing until the first line', () => {
    const j = new JsonLines();
    expect([j.lines(), j.bytes]).toEqual([[], 0]);
    j.push('');
    expect([j.lines(), j.bytes]).toEqual([[''], 1]);
  });

  it('gives back every line in order, across chunks and past the largest chunk, costed as UTF-8', () => {
    const j = new JsonLines();
    const pushed: string[] = [];
    const add = (l: string) => {
      j.push(l);
      pushed.push(l);
    };
    for (let i = 0; i < 20_000; i++) add(JSON.stringify({ seq: i, label: i % 7 === 0 ? 'é€😀' : null, pad: 'x'.repeat(i % 300) }));
    add('y'.repeat(3 * 1024 * 1024));
    add(JSON.stringify({ after: 'the long line', surrogate: '\ud800' }));
    expect(j.lines()).toEqual(pushed);
    expect(j.bytes).toBe(utf8(pushed));
  });

  it('any strings without a newline round-trip (property)', () => {
    const line = fc.string({ unit: 'binary', maxLength: 5000 }).map((s) => s.replaceAll('\n', ' '));
    fc.assert(
      fc.property(fc.array(line, { maxLength: 60 }), (lines) => {
        const j = new JsonLines();
        for (const l of lines) j.push(l);
        // Lone surrogates are not UTF-8: they come back as U+FFFD, as any UTF-8 store gives them (JSON.stringify
        // escapes them, so a trace line never has one).
        const expected = lines.map((l) => Buffer.from(l, 'utf8').toString('utf8'));
        expect(j.lines()).toEqual(expected);
        expect(j.bytes).toBe(utf8(lines));
      }),
      { numRuns: 200 },
    );
  });
});

/**
 * Packed map/unmap records (JsonLines.pushCommand): whatever a caller hands over, the line given back is exactly
 * JSON.stringify of the record and `bytes` counts that line; a record that cannot be packed is refused (the caller
 * keeps its JSON line), and the shapes routes and replays make are packed.
 */
describe('JsonLines.pushCommand', () => {
  const entries = (o: Record<string, unknown>, order: number[] | null, extra: [string, unknown] | null) => {
    const e = Object.entries(o);
    const sorted = order ? order.map((i) => e[i % e.length]!).filter((x, i, a) => a.indexOf(x) === i) : e;
    return Object.fromEntries(extra ? [...sorted, extra] : sorted);
  };
  const odd = fc.constantFrom<unknown>(-1, -0, 0.5, 2 ** 32, 2 ** 53, NaN, Infinity, '4096', null, undefined, true);
  const u32 = fc.oneof(fc.constantFrom(0, 1, 9, 10, 4096, 0x80000000, 0xffffffff), fc.nat({ max: 0xffffffff }));
  const num = fc.oneof({ weight: 6, arbitrary: u32 }, { weight: 1, arbitrary: odd });
  const text = fc.oneof(fc.constantFrom('d1', 's-1f.3', 'owner', 'read', 'write', 'exec', 'noexec', 'priv', ''), fc.string({ unit: 'binary', maxLength: 12 }));
  const order = fc.option(fc.array(fc.nat({ max: 7 }), { minLength: 1, maxLength: 8 }), { freq: 3 });
  const extra = fc.option(fc.tuple(fc.constantFrom('x', 'op', 'toJSON', '0'), fc.constantFrom<unknown>(1, 'y', undefined)), { freq: 6 });
  const prot = fc.oneof({ weight: 6, arbitrary: fc.array(text, { maxLength: 6 }) }, { weight: 1, arbitrary: fc.array(fc.oneof(text, odd), { maxLength: 3 }) }, { weight: 1, arbitrary: odd });
  const cmd = fc.oneof(
    fc.record({ op: fc.constant('map'), did: fc.oneof(text, odd), iova: num, paddr: num, size: num, prot }),
    fc.record({ op: fc.constantFrom('unmap', 'map', 'flush'), did: fc.oneof(text, odd), iova: num, size: num }),
  ).chain((c) => fc.tuple(order, extra).map(([o, x]) => entries(c, o, x)));
  const by = fc.oneof(
    fc.constant(null),
    fc.record({ role: fc.oneof(text, fc.constantFrom('observer', 'operator'), odd), label: fc.oneof(fc.constant(null), text, odd) }).chain((b) => fc.tuple(order, extra).map(([o, x]) => entries(b, o, x))),
  );
  const iso = fc.date({ noInvalidDate: true }).map((d) => d.toISOString());
  const time = fc.oneof({ weight: 6, arbitrary: iso }, { weight: 1, arbitrary: fc.constantFrom('2026-11-26T05:22:57.123+00:00', '2026-11-26T05:22:57Z', 'now', '') });
  const seq = fc.oneof({ weight: 6, arbitrary: fc.oneof(fc.nat(), fc.maxSafeNat()) }, { weight: 1, arbitrary: odd });
  const record = fc.record({ seq, time, by, cmd });

  it('gives back JSON.stringify of every record, packed or not, and counts its bytes (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(record, fc.string({ maxLength: 40 }).map((s) => JSON.stringify({ s }))), { maxLength: 80 }), (items) => {
        const j = new JsonLines();
        const expected: string[] = [];
        for (const it of items) {
          if (typeof it === 'string') j.push(it);
          else if (!j.pushCommand(it.seq as number, it.time, it.by, it.cmd)) j.push(JSON.stringify(it));
          expected.push(typeof it === 'string' ? it : JSON.stringify(it));
        }
        expect(j.lines()).toEqual(expected);
        expect(j.bytes).toBe(utf8(expected));
      }),
      { numRuns: 500 },
    );
  });

  it('an actor object handed over again gives its line as it is then: frozen, mutable or with a getter (property)', () => {
    let getterRole: unknown = 'owner';
    const getter = Object.freeze(Object.defineProperties({}, { role: { get: () => getterRole, enumerable: true }, label: { value: null, enumerable: true } }));
    const pool = () => [Object.freeze({ role: 'owner', label: null }), Object.freeze({ role: 'operator', label: 'ci' }), Object.freeze({ label: null, role: 'owner' }), getter, { role: 'owner', label: null }];
    const time = new Date(Date.UTC(2026, 10, 26, 5, 22, 57, 123)).toISOString();
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat({ max: 4 }), fc.boolean(), fc.constantFrom('owner', 'operator', 7)), { maxLength: 60 }), (steps) => {
        const actors = pool();
        const j = new JsonLines();
        const expected: string[] = [];
        steps.forEach(([k, map, role], i) => {
          const by = actors[k]! as { role: unknown };
          const cmd = map ? { op: 'map', did: 'd1', iova: 0x1000 * i, paddr: 0x80000000, size: 4096, prot: ['read'] } : { op: 'unmap', did: 'd1', iova: 0x1000 * i, size: 4096 };
          const rec = { seq: i, time, by, cmd };
          const line = JSON.stringify(rec);
          if (!j.pushCommand(i, time, by, cmd)) j.push(line);
          expected.push(line);
          // The mutable actor and the getter's value change between records.
          if (k === 4) by.role = role;
          if (k === 3) getterRole = role;
        });
        expect(j.lines()).toEqual(expected);
        expect(j.bytes).toBe(utf8(expected));
      }),
      { numRuns: 300 },
    );
  });

  it('packs the records routes and replays make, across chunks, and refuses what it cannot give back exactly', () => {
    const j = new JsonLines();
    const expected: string[] = [];
    const time = new Date(Date.UTC(2026, 10, 26, 5, 22, 57, 123)).toISOString();
    for (let i = 0; i < 5000; i++) {
      const by = i % 3 === 0 ? null : { role: i % 2 ? 'owner' : 'operator', label: i % 5 ? null : `ci-${i % 7}` };
      const cmd = i % 2 ? { op: 'unmap', did: `d${i % 4}`, iova: 0x1000 * i, size: 4096 } : { op: 'map', did: 'd1', iova: 0x1000 * i, paddr: 0x80000000 + i, size: 4096, prot: ['read', 'write'] };
      expect(j.pushCommand(i * 3, time, by, cmd)).toBe(true);
      expected.push(JSON.stringify({ seq: i * 3, time, by, cmd }));
      if (i % 1000 === 0) {
        j.push(JSON.stringify({ seq: i, note: 'é€😀' }));
        expected.push(JSON.stringify({ seq: i, note: 'é€😀' }));
      }
    }
    expect(j.lines()).toEqual(expected);
    expect(j.bytes).toBe(utf8(expected));
    const by = { role: 'owner', label: null };
    const map = { op: 'map', did: 'd1', iova: 0, paddr: 0, size: 4096, prot: ['read'] };
    // Another key order, an extra key, a 33-bit address, a non-ISO time, an object with toJSON: JSON lines instead.
    expect(j.pushCommand(1, time, by, { op: 'map', did: 'd1', paddr: 0, iova: 0, size: 4096, prot: [] })).toBe(false);
    expect(j.pushCommand(1, time, by, { ...map, extra: 1 })).toBe(false);
    expect(j.pushCommand(1, time, by, { ...map, iova: 2 ** 32 })).toBe(false);
    expect(j.pushCommand(1, '2026-11-26T05:22:57Z', by, map)).toBe(false);
    expect(j.pushCommand(1, time, { label: null, role: 'owner' }, map)).toBe(false);
    expect(j.pushCommand(1, time, by, Object.assign(Object.create({ toJSON: () => 'x' }), map))).toBe(false);
    expect(j.lines()).toEqual(expected);
  });
});
