import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, type Client } from '../support/server.js';

const addr = fc.oneof(
  fc.integer({ min: 0, max: 0x3ffff }).map((p) => p * 0x1000),
  fc.integer({ min: 0, max: 2 ** 33 }),
  fc.integer({ min: 0, max: 0x3ffff }).map((p) => '0x' + (0x80000000 + p * 0x1000).toString(16)),
  fc.constantFrom('0x', '12', '-1', '0xFFFFFFFF', '0x100000000', null, true, 1.5, -4096),
);
const prot = fc.oneof(fc.subarray(['read', 'write', 'noexec', 'cache', 'mmio', 'priv']), fc.constant(['x']), fc.constant('read'));
const junk = fc.jsonValue({ maxDepth: 2 });

/** Requests shaped like the API's, with every field sometimes wrong. */
function requestArb(did: () => string): fc.Arbitrary<[string, string, unknown]> {
  const D = () => did();
  return fc.oneof(
    fc.record({ iova: addr, paddr: addr, size: fc.oneof(fc.constantFrom(4096, 65536, 0x100000, 0x1000000, 0), addr), prot }).map((b) => ['POST', `/domains/${D()}/map`, b] as [string, string, unknown]),
    fc.record({ iova: addr, size: fc.oneof(fc.constantFrom(4096, 0x100000), addr) }).map((b) => ['POST', `/domains/${D()}/unmap`, b] as [string, string, unknown]),
    fc.record({ ops: fc.array(fc.record({ op: fc.constantFrom('map', 'unmap', 'x'), iova: addr, paddr: addr, size: fc.constantFrom(4096, 65536), prot }, { requiredKeys: ['op', 'iova', 'size'] }), { maxLength: 4 }) }).map((b) => ['POST', `/domains/${D()}/batch`, b] as [string, string, unknown]),
    fc.record({ iova: addr, access: fc.constantFrom('read', 'write', 'exec', 'fly'), size: fc.option(fc.integer({ min: -1, max: 9000 }), { nil: undefined }), priv: fc.option(fc.boolean(), { nil: undefined }) }, { requiredKeys: ['iova', 'access'] }).map((b) => ['POST', `/devices/${['dev0', 'dev1', 'nope'][Number(b.iova) % 3 || 0]}/access`, b] as [string, string, unknown]),
    fc.record({ device: fc.constantFrom('dev0', 'dev1', 'zz'), replace: fc.boolean() }).map((b) => ['POST', `/domains/${D()}/attach`, b] as [string, string, unknown]),
    fc.record({ device: fc.constantFrom('dev0', 'dev1') }).map((b) => ['POST', `/domains/${D()}/detach`, b] as [string, string, unknown]),
    fc.constant(['POST', '/domains', {}] as [string, string, unknown]),
    fc.constant(['DELETE', '/domains/DID', undefined] as [string, string, unknown]).map(([m]) => [m, `/domains/${D()}`, undefined] as [string, string, unknown]),
    fc.tuple(fc.constantFrom('flush', 'sync'), fc.option(fc.record({ iova: addr, size: addr }), { nil: undefined })).map(([r, b]) => ['POST', `/domains/${D()}/${r}`, r === 'flush' ? b : undefined] as [string, string, unknown]),
    fc.tuple(fc.integer({ min: 0, max: 0x2000 }), fc.option(addr, { nil: undefined })).map(([o, v]) => (v === undefined ? ['GET', `/smmus/smmu0/mmio/${o}`, undefined] : ['PUT', `/smmus/smmu0/mmio/${o}`, { value: v }]) as [string, string, unknown]),
    fc.record({ faultMode: fc.constantFrom('stall', 'terminate', 'maybe') }).map((b) => ['PATCH', '/smmus/smmu0/contexts/dev0', b] as [string, string, unknown]),
    fc.tuple(fc.constantFrom('POST', 'PUT', 'PATCH', 'DELETE', 'GET'), fc.constantFrom('/domains', `/domains/DID/map`, '/smmus/smmu0/contexts/1/clear-fault', '/tokens', '/smmus/smmu0/contexts/0/resume'), junk).map(([m, u, b]) => [m, u.replace('DID', D()), b] as [string, string, unknown]),
    fc.constantFrom('pagetable', 'mappings', 'iova-to-phys/0x1000', 'iova-to-phys/junk').map((r) => ['GET', `/domains/${D()}/${r}`, undefined] as [string, string, unknown]),
  );
}

describe('property: random requests against a live app', () => {
  let c: Client;
  const dids: string[] = [];
  beforeAll(async () => {
    c = await client('tiny', { validateResponses: true });
    for (let i = 0; i < 2; i++) dids.push((await c.call('POST', '/domains', {})).body.id);
  });
  afterAll(() => c.app.close());

  it('2,000+ requests: never a 5xx; every refusal is an error body and leaves revision unchanged', async () => {
    let pick = 0;
    const did = () => (pick++ % 5 === 4 ? 'dom-999' : dids[pick % dids.length]!);
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(requestArb(did), { minLength: 100, maxLength: 100 }), async (reqs) => {
        for (const [method, url, body] of reqs) {
          n++;
          const before = (await c.call('GET', '/')).body.revision;
          const r = await c.call(method, url, body);
          expect(r.status, `${method} ${url} ${JSON.stringify(body)} → ${JSON.stringify(r.body)}`).toBeLessThan(500);
          const after = (await c.call('GET', '/')).body.revision;
          if (r.status >= 400) {
            expect(typeof r.body.error.code).toBe('string');
            expect(after).toBe(before);
          } else expect(after - before).toBe(method === 'GET' ? 0 : 1);
          if (method === 'POST' && url === '/domains' && r.status === 201) dids.push(r.body.id);
        }
      }),
      { numRuns: 21, seed: 42 },
    );
    expect(n).toBeGreaterThanOrEqual(2000);
  });
});
