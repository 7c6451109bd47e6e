import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IommudClient, type SessionClient } from '../../src/client/index.js';
import { build } from '../../src/server/app.js';

/** Long lists come in pages with a Link rel="next" cursor: never cut silently at 1,000. */
describe('cursor pagination of mappings and buffers', () => {
  let app: FastifyInstance;
  let s: SessionClient;
  let did: string;
  beforeAll(async () => {
    app = await build();
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    s = await new IommudClient({ url }).createSession({ profile: 'msm8x60' });
    did = (await s.allocDomain()).id;
    // 1,200 separate 4K extents (every other page, so none merge), in one batch.
    await s.batch(
      did,
      Array.from({ length: 1200 }, (_, i) => ({ op: 'map' as const, iova: 0x10000000 + i * 0x2000, paddr: 0x40000000 + i * 0x2000, size: 0x1000, prot: ['read'] as ['read'] })),
    );
  });
  afterAll(() => app.close());

  it('the first page is 1,000 extents and a Link to the rest; the last page has no Link', async () => {
    const sid = s.id;
    const first = await app.inject({ method: 'GET', url: `/v1/sessions/${sid}/domains/${did}/mappings`, headers: { authorization: `Bearer ${s.token}` } });
    expect(first.json()).toHaveLength(1000);
    expect(first.json()[999].iova).toBe('0x107ce000');
    expect(first.headers.link).toBe(`</v1/sessions/${sid}/domains/${did}/mappings?from=0x107cf000&limit=1000>; rel="next"`);
    const rest = await app.inject({ method: 'GET', url: String(first.headers.link).slice(1, String(first.headers.link).indexOf('>')), headers: { authorization: `Bearer ${s.token}` } });
    expect(rest.json()).toHaveLength(200);
    expect(rest.json()[0].iova).toBe('0x107d0000');
    expect(rest.headers.link).toBeUndefined();
  });

  it('the SDK follows the cursor: every extent exactly once, in order', async () => {
    const seen: string[] = [];
    for await (const m of s.allMappings(did, { limit: 250 })) seen.push(m.iova);
    expect(seen).toHaveLength(1200);
    expect(seen[0]).toBe('0x10000000');
    expect(seen[1199]).toBe('0x1095e000');
    expect(new Set(seen).size).toBe(1200);
    const p = await s.mappingsPage(did, { limit: 1200 });
    expect(p.next).toBeNull();
  });

  it('buffers: paddr order, pages with a cursor', async () => {
    for (let i = 0; i < 5; i++) await s.allocBuffer({ size: 0x1000 });
    const all = await s.buffers();
    expect(all.map((b) => b.paddr)).toEqual([...all.map((b) => b.paddr)].sort((a, b) => parseInt(a, 16) - parseInt(b, 16)));
    const p1 = await s.buffersPage({ limit: 2 });
    expect(p1.items.map((b) => b.paddr)).toEqual(all.slice(0, 2).map((b) => b.paddr));
    expect(p1.next).toEqual({ from: '0x' + (parseInt(all[1]!.paddr, 16) + 1).toString(16), limit: 2 });
    const p3 = await s.buffersPage({ ...p1.next!, from: '0x' + (parseInt(all[3]!.paddr, 16) + 1).toString(16) });
    expect(p3.items.map((b) => b.paddr)).toEqual([all[4]!.paddr]);
    expect(p3.next).toBeNull();
  });
});
