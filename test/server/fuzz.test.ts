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
    fc.record({ paddr: addr, size: fc.oneof(fc.integer({ min: 0, max: 0x20000 }), addr), dir: fc.constantFrom('to-device', 'from-device', 'bidirectional', 'sideways') }).map((b) => ['POST', `/devices/${['dev0', 'dev1'][Number(b.size) % 2]}/dma/map`, b] as [string, string, unknown]),
    fc.record({ dmaAddr: addr, size: fc.integer({ min: 0, max: 0x20000 }), dir: fc.constantFrom('to-device', 'from-device', 'bidirectional') }).map((b) => ['POST', '/devices/dev1/dma/unmap', b] as [string, string, unknown]),
    fc.record({ dmaAddr: addr, size: fc.integer({ min: 0, max: 0x2000 }), offset: fc.option(addr, { nil: undefined }), for: fc.constantFrom('cpu', 'device') }, { requiredKeys: ['dmaAddr', 'size', 'for'] }).map((b) => ['POST', '/devices/dev1/dma/sync', b] as [string, string, unknown]),
    fc.record({ segments: fc.array(fc.record({ paddr: addr, size: fc.integer({ min: 1, max: 0x4000 }) }), { maxLength: 3 }), dir: fc.constantFrom('to-device', 'bidirectional') }).map((b) => ['POST', '/devices/dev0/dma/map-sg', b] as [string, string, unknown]),
    fc.record({ flushPolicy: fc.constantFrom('strict', 'deferred'), dmaLimit: fc.option(addr, { nil: undefined }) }, { requiredKeys: [] }).map((b) => ['PATCH', '/devices/dev1/dma', b] as [string, string, unknown]),
    fc.record({ size: fc.oneof(fc.integer({ min: 0, max: 0x400000 }), addr), align: fc.option(fc.constantFrom(4096, 0x10000, 0x1800, 0, '0x100000'), { nil: undefined }), pools: fc.option(fc.constantFrom(['ram'], ['nope'], []), { nil: undefined }) }, { requiredKeys: ['size'] }).map((b) => ['POST', '/buffers', b] as [string, string, unknown]),
    addr.map((a) => ['DELETE', `/buffers/${typeof a === 'string' ? a : String(a)}`, undefined] as [string, string, unknown]),
    fc.tuple(addr, fc.integer({ min: 0, max: 0x500000 })).map(([a, n]) => ['GET', `/memory?paddr=${String(a)}&size=${n}`, undefined] as [string, string, unknown]),
    fc.record({ value: fc.option(addr, { nil: undefined }) }).map((b) => ['POST', '/smmus/smmu0/contexts/dev0/clear-fault', b] as [string, string, unknown]),
    fc.record({ kind: fc.constantFrom('external', 'multi-hit', 'tlb-miss', 'bogus') }).map((b) => ['POST', '/smmus/smmu0/contexts/0/inject-fault', b] as [string, string, unknown]),
    fc.record({ ops: fc.array(fc.record({ op: fc.constantFrom('read', 'write'), offset: fc.oneof(fc.integer({ min: 0, max: 0x1000 }).map((o) => o * 4), addr), value: fc.option(addr, { nil: undefined }) }, { requiredKeys: ['op', 'offset'] }), { maxLength: 4 }) }).map((b) => ['POST', '/smmus/smmu0/mmio', b] as [string, string, unknown]),
    fc.tuple(fc.integer({ min: 0, max: 300 }), addr).map(([mid, iova]) => ['POST', `/smmus/smmu0/masters/${mid}/access`, { iova, access: 'read' }] as [string, string, unknown]),
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
          // The one 5xx the contract has is 507 NO_SPACE (IOVA space or a pool exhausted): a refusal, not a failure.
          const status = r.status === 507 && r.body?.error?.code === 'NO_SPACE' ? 499 : r.status;
          expect(status, `${method} ${url} ${JSON.stringify(body)} → ${JSON.stringify(r.body)}`).toBeLessThan(500);
          const after = (await c.call('GET', '/')).body.revision;
          if (r.status >= 400) {
            expect(typeof r.body.error.code).toBe('string');
            expect(after).toBe(before);
          } else expect(after - before).toBe(method === 'GET' ? 0 : 1);
          if (method === 'POST' && url === '/domains' && r.status === 201) dids.push(r.body.id);
        }
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 21), seed: Number(process.env.FUZZ_SEED ?? 42) },
    );
    expect(n).toBeGreaterThanOrEqual(2000);
  });
});
