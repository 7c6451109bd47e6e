/**
 * The reply writers of the map, unmap and access routes (src/server/replies.ts) give exactly JSON.stringify of what
 * they are handed: the shapes the views make, near misses of them (other key orders, extra keys, strings to escape,
 * odd numbers, toJSON, other prototypes) and anything at all.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as S from '../../src/api/schemas.js';
import { replyWriter } from '../../src/server/replies.js';
import { build } from '../../src/server/app.js';

const text = fc.oneof(
  fc.constantFrom('0x1000', '0x80000010', 'ok', 'hit', 'miss', '', 'a"b', 'a\\b', 'é', '\u2028', '\x7f', '\x1f', '\ud800'),
  fc.nat().map((n) => `0x${n.toString(16)}`),
  fc.string({ unit: 'binary', maxLength: 6 }),
);
const num = fc.oneof({ weight: 6, arbitrary: fc.nat() }, { weight: 2, arbitrary: fc.constantFrom(-0, -1, 0.5, 1e21, 1e-7, 2 ** 53, NaN, Infinity, -Infinity) }, { weight: 1, arbitrary: fc.double() });
const odd = fc.constantFrom<unknown>(undefined, null, true, '1', [], {}, () => 1, Symbol('s'), 10n);
const val = (a: fc.Arbitrary<unknown>) => fc.oneof({ weight: 8, arbitrary: a }, { weight: 1, arbitrary: odd });
/** An object of these entries, sometimes with a key dropped, the order changed or a key added. */
const near = (rec: fc.Arbitrary<Record<string, unknown>>) =>
  rec.chain((r) =>
    fc.tuple(fc.option(fc.shuffledSubarray(Object.keys(r)), { freq: 4 }), fc.option(fc.tuple(fc.constantFrom('x', 'size', 'toJSON', 'stale'), fc.oneof(num, text, odd)), { freq: 5 })).map(([keys, extra]) => {
      const out: Record<string, unknown> = {};
      for (const k of keys ?? Object.keys(r)) out[k] = r[k];
      if (extra) out[extra[0]] = extra[1];
      return out;
    }),
  );
const pages = near(fc.record({ '4K': val(num), '64K': val(num), '1M': val(num), '16M': val(num) }));
const map = near(fc.record({ iova: val(text), size: val(num), pages: val(pages) }));
const unmap = near(fc.record({ unmapped: val(num) }));
const access = near(fc.record({ outcome: val(fc.constantFrom('ok', 'fault')), paddr: val(text), tlb: val(fc.oneof(fc.constantFrom('hit', 'miss', 'bypass'), text)) }));

const same = (schema: unknown, data: unknown) => {
  let want: string | undefined;
  let threw = false;
  try {
    want = JSON.stringify(data);
  } catch {
    threw = true;
  }
  if (threw) expect(() => replyWriter(schema)(data)).toThrow();
  else expect(replyWriter(schema)(data)).toBe(want);
};

describe('reply writers: exactly JSON.stringify', () => {
  it('the views as the routes answer them', () => {
    same(S.MapResponse, { iova: '0x1000', size: 4096, pages: { '4K': 1, '64K': 0, '1M': 0, '16M': 0 } });
    same(S.UnmapResponse, { unmapped: 4096 });
    same(S.AccessResponse, { outcome: 'ok', paddr: '0x80000010', tlb: 'hit' });
    same(S.AccessResponse, { outcome: 'ok', paddr: '0x80000010', tlb: 'hit', stale: true });
    same(S.AccessResponse, { outcome: 'fault', fault: { kind: 'translation', iova: '0x1000' } });
  });

  it('objects JSON.stringify writes otherwise: toJSON, prototypes, getters', () => {
    const m = { iova: '0x1000', size: 4096, pages: { '4K': 1, '64K': 0, '1M': 0, '16M': 0 } };
    same(S.MapResponse, Object.assign(Object.create({ toJSON: () => 'x' }), m));
    same(S.MapResponse, Object.assign(Object.create(null), m));
    same(S.MapResponse, { ...m, toJSON: () => ({ a: 1 }) });
    same(S.MapResponse, { ...m, pages: Object.assign(Object.create({ extra: 1 }), m.pages) });
    // A getter is read once, as JSON.stringify reads it.
    const counting = () => {
      let n = 0;
      return Object.defineProperty({}, 'unmapped', { get: () => ++n, enumerable: true });
    };
    expect(replyWriter(S.UnmapResponse)(counting())).toBe(JSON.stringify(counting()));
    same(S.UnmapResponse, new Map([['unmapped', 1]]));
    same(S.AccessResponse, Object.defineProperty({ outcome: 'ok', paddr: '0x1', tlb: 'hit' }, 'hidden', { value: 1, enumerable: false }));
  });

  it('random values near each shape and anything at all (property)', () => {
    fc.assert(
      fc.property(fc.oneof(map, unmap, access, fc.anything()), fc.constantFrom<unknown>(S.MapResponse, S.UnmapResponse, S.AccessResponse, S.DomainResponse), (data, schema) => same(schema, data)),
      { numRuns: 4000, seed: 16 },
    );
  });

  it('the daemon answers map, unmap and access with these writers, as the zod-checked replies', async () => {
    const texts: Record<string, string[]> = {};
    for (const validateResponses of [false, true]) {
      const app = await build({ validateResponses });
      const s = (await app.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'tiny' } })).json();
      const headers = { authorization: `Bearer ${s.token}` };
      const base = `/v1/sessions/${s.id}`;
      const did = (await app.inject({ method: 'POST', url: `${base}/domains`, headers, payload: {} })).json().id;
      const out: string[] = [];
      const req = async (url: string, payload: unknown) => out.push((await app.inject({ method: 'POST', url: `${base}${url}`, headers, payload: payload as object })).body);
      await req(`/domains/${did}/attach`, { device: 'dev0' });
      await req(`/domains/${did}/map`, { iova: '0x40000000', paddr: '0x80000000', size: 0x11000, prot: ['read', 'write'] });
      await req('/devices/dev0/access', { iova: '0x40000010', access: 'read' });
      await req('/devices/dev0/access', { iova: '0x40000010', access: 'read' });
      await req('/devices/dev0/access', { iova: '0x50000010', access: 'read' });
      await req(`/domains/${did}/unmap`, { iova: '0x40000000', size: 0x11000 });
      await req(`/domains/${did}/unmap`, { iova: '0x40000000', size: 0x1000 });
      texts[String(validateResponses)] = out.map((t) => t.replace(/"(seq|time)":("[^"]*"|\d+)/g, ''));
      await app.close();
    }
    expect(texts.false).toEqual(texts.true);
    expect(texts.false![1]).toBe('{"iova":"0x40000000","size":69632,"pages":{"4K":1,"64K":1,"1M":0,"16M":0}}');
  });
});
