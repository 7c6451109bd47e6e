import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, type Client } from '../support/server.js';

describe('every error code a route can give, and nothing changes', () => {
  let c: Client;
  let did: string;
  beforeAll(async () => {
    c = await client('tiny');
    did = (await c.call('POST', '/domains', {})).body.id;
    await c.call('POST', `/domains/${did}/map`, { iova: '0x100000', paddr: '0x80000000', size: '0x100000', prot: ['read', 'write'] });
  });
  afterAll(() => c.app.close());

  const cases: Array<[string, string, string, unknown, number, string]> = [
    ['unknown field', 'POST', '/domains/DID/map', { iova: 0, paddr: 0, size: 4096, prot: ['read'], extra: 1 }, 400, 'BAD_REQUEST'],
    ['decimal string address', 'POST', '/domains/DID/map', { iova: '4096', paddr: 0, size: 4096, prot: ['read'] }, 400, 'BAD_REQUEST'],
    ['negative address', 'POST', '/domains/DID/map', { iova: -4096, paddr: 0, size: 4096, prot: ['read'] }, 400, 'BAD_REQUEST'],
    ['unknown prot flag', 'POST', '/domains/DID/map', { iova: 0, paddr: 0, size: 4096, prot: ['rwx'] }, 400, 'BAD_REQUEST'],
    ['prot without read or write', 'POST', '/domains/DID/map', { iova: 0, paddr: 0x80000000, size: 4096, prot: ['noexec'] }, 400, 'BAD_REQUEST'],
    ['unaligned iova', 'POST', '/domains/DID/map', { iova: '0x1001', paddr: 0x80000000, size: 4096, prot: ['read'] }, 400, 'UNALIGNED'],
    ['past 32 bits', 'POST', '/domains/DID/map', { iova: '0x100000000', paddr: 0x80000000, size: 4096, prot: ['read'] }, 400, 'OUT_OF_RANGE'],
    ['iova + size past 2^32', 'POST', '/domains/DID/map', { iova: '0xfffff000', paddr: 0x80000000, size: 8192, prot: ['read'] }, 400, 'OUT_OF_RANGE'],
    ['zero size', 'POST', '/domains/DID/map', { iova: 0, paddr: 0x80000000, size: 0, prot: ['read'] }, 400, 'OUT_OF_RANGE'],
    ['already mapped', 'POST', '/domains/DID/map', { iova: '0x180000', paddr: 0x80000000, size: 4096, prot: ['read'] }, 409, 'ALREADY_MAPPED'],
    ['unmap nothing', 'POST', '/domains/DID/unmap', { iova: '0x10000000', size: 4096 }, 404, 'NOT_MAPPED'],
    ['iova-to-phys unmapped', 'GET', '/domains/DID/iova-to-phys/0x5000', undefined, 404, 'NOT_MAPPED'],
    ['iova-to-phys past 32 bits', 'GET', '/domains/DID/iova-to-phys/0x100000000', undefined, 400, 'OUT_OF_RANGE'],
    ['unknown domain', 'GET', '/domains/dom-77', undefined, 404, 'NOT_FOUND'],
    ['unknown device', 'POST', '/domains/DID/attach', { device: 'nope' }, 404, 'NOT_FOUND'],
    ['detach not attached', 'POST', '/domains/DID/detach', { device: 'dev1' }, 409, 'NOT_ATTACHED'],
    ['bad pgsize', 'POST', '/domains', { pgsizes: [8192] }, 400, 'BAD_REQUEST'],
    ['unknown SMMU', 'GET', '/smmus/nope/contexts/0', undefined, 404, 'NOT_FOUND'],
    ['unknown context', 'GET', '/smmus/smmu0/contexts/7', undefined, 404, 'NOT_FOUND'],
    ['unknown stall', 'POST', '/smmus/smmu0/contexts/0/resume', { stall: 'stall-9', action: 'retry' }, 404, 'NOT_FOUND'],
    ['unaligned register', 'GET', '/smmus/smmu0/mmio/0x2', undefined, 400, 'BAD_REQUEST'],
    ['reserved register', 'GET', '/smmus/smmu0/mmio/0x50', undefined, 400, 'BAD_REQUEST'],
    ['bank beyond the SMMU', 'GET', '/smmus/smmu0/mmio/0x2000', undefined, 400, 'BAD_REQUEST'],
    ['register value past 32 bits', 'PUT', '/smmus/smmu0/mmio/0x10', { value: '0x100000000' }, 400, 'OUT_OF_RANGE'],
    ['data with a read', 'POST', '/devices/dev0/access', { iova: 0, access: 'read', data: 'AAAA' }, 400, 'BAD_REQUEST'],
    ['access past 32 bits', 'POST', '/devices/dev0/access', { iova: '0xffffffff', access: 'read', size: 2 }, 400, 'OUT_OF_RANGE'],
    ['unknown device access', 'POST', '/devices/nope/access', { iova: 0, access: 'read' }, 404, 'NOT_FOUND'],
    ['no route', 'GET', '/nothing-here', undefined, 404, 'NOT_FOUND'],
  ];

  it.each(cases)('%s → %i %s', async (_name, method, path, body, status, code) => {
    const before = (await c.call('GET', '/')).body.revision;
    const r = await c.call(method, path.replace('DID', did), body);
    expect(r.status).toBe(status);
    expect(r.body.error.code).toBe(code);
    expect(typeof r.body.error.message).toBe('string');
    expect((await c.call('GET', '/')).body.revision).toBe(before);
  });

  it('DEVICE_BUSY and DOMAIN_ATTACHED; PARTIAL_UNMAP; a failing batch changes nothing', async () => {
    const d2 = (await c.call('POST', '/domains', { partialUnmap: 'refuse' })).body.id;
    await c.call('POST', `/domains/${did}/attach`, { device: 'dev0' });
    expect((await c.call('POST', `/domains/${d2}/attach`, { device: 'dev0' })).body.error.code).toBe('DEVICE_BUSY');
    expect((await c.call('DELETE', `/domains/${did}`)).body.error.code).toBe('DOMAIN_ATTACHED');
    await c.call('POST', `/domains/${d2}/map`, { iova: '0x100000', paddr: '0x80000000', size: '0x100000', prot: ['read'] });
    const r = await c.call('POST', `/domains/${d2}/unmap`, { iova: '0x100000', size: 4096 });
    expect([r.status, r.body.error.code]).toEqual([409, 'PARTIAL_UNMAP']);
    const pt = (await c.call('GET', `/domains/${d2}/pagetable`)).body;
    const b = await c.call('POST', `/domains/${d2}/batch`, { ops: [{ op: 'map', iova: 0, paddr: '0x80000000', size: 4096, prot: ['read'] }, { op: 'unmap', iova: '0x100000', size: 4096 }] });
    expect(b.status).toBe(409);
    expect(b.body.error.details.op).toBe(1);
    expect((await c.call('GET', `/domains/${d2}/pagetable`)).body).toEqual(pt);
  });

  it('415 for a body that is not JSON; 400 for broken JSON; 413 over the body limit', async () => {
    const url = `/v1/sessions/${c.sid}/domains`;
    const h = { authorization: `Bearer ${c.token}` };
    const a = await c.app.inject({ method: 'POST', url, headers: { ...h, 'content-type': 'text/plain' }, payload: 'hi' });
    expect([a.statusCode, a.json().error.code]).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
    const b = await c.app.inject({ method: 'POST', url, headers: { ...h, 'content-type': 'application/json' }, payload: '{"label":' });
    expect([b.statusCode, b.json().error.code]).toEqual([400, 'BAD_REQUEST']);
    const big = await c.app.inject({ method: 'POST', url, headers: { ...h, 'content-type': 'application/json' }, payload: JSON.stringify({ label: 'x'.repeat(9 * 1024 * 1024) }) });
    expect([big.statusCode, big.json().error.code]).toEqual([413, 'PAYLOAD_TOO_LARGE']);
  });

  it('LIMIT on sessions, domains and batch size', async () => {
    const small = await client('tiny', { limits: { maxSessions: 1, maxDomainsPerSession: 1, maxBatchOps: 2 } });
    const s = await small.app.inject({ method: 'POST', url: '/v1/sessions', payload: {} });
    expect([s.statusCode, s.json().error.code]).toEqual([429, 'LIMIT']);
    expect((await small.call('POST', '/domains', {})).status).toBe(201);
    expect((await small.call('POST', '/domains', {})).body.error.code).toBe('LIMIT');
    const b = await small.call('POST', '/devices/dev0/access-batch', { access: 'read', iovas: [0, 1, 2] });
    expect([b.status, b.body.error.code]).toEqual([413, 'PAYLOAD_TOO_LARGE']);
    await small.app.close();
  });
});

describe('quotas: mapped pages per session and subscribers per session', () => {
  it('LIMIT when a map would pass the session page quota; nothing is mapped', async () => {
    const c = await client('tiny', { limits: { maxMappedPagesPerSession: 16 } });
    const d = (await c.call('POST', '/domains', { pgsizes: [4096] })).body.id;
    expect((await c.call('POST', `/domains/${d}/map`, { iova: 0, paddr: '0x80000000', size: 0x10000, prot: ['read'] })).status).toBe(200);
    const r = await c.call('POST', `/domains/${d}/map`, { iova: 0x100000, paddr: '0x80000000', size: 0x1000, prot: ['read'] });
    expect([r.status, r.body.error.code]).toEqual([429, 'LIMIT']);
    expect((await c.call('GET', `/domains/${d}`)).body.pages['4K']).toBe(16);
    await c.app.close();
  });

  it('LIMIT for a subscriber past the per-session quota, before the upgrade', async () => {
    const c = await client('tiny', { limits: { maxSubscribersPerSession: 1 } });
    const url = (await c.app.listen({ port: 0, host: '127.0.0.1' })).replace('http', 'ws') + `/v1/sessions/${c.sid}/events?token=${c.token}`;
    const { default: WebSocket } = await import('ws');
    const a = new WebSocket(url);
    await new Promise((r) => a.once('open', r));
    const b = new WebSocket(url);
    const status = await new Promise<number>((r) => b.once('unexpected-response', (_q, res) => r(res.statusCode ?? 0)));
    expect(status).toBe(429);
    a.close();
    await c.app.close();
  });
});

describe('rate limit', () => {
  it('past the per-session rate: 429 LIMIT with Retry-After, nothing changed; other sessions unaffected', async () => {
    const c = await client('tiny', { limits: { requestsPerSecond: 5 } });
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push((await c.call('POST', '/domains', {})).status);
    expect(statuses.slice(0, 5)).toEqual([201, 201, 201, 201, 201]);
    expect(statuses.slice(5)).toEqual([429, 429, 429]);
    const r = await c.app.inject({ method: 'GET', url: `/v1/sessions/${c.sid}`, headers: { authorization: `Bearer ${c.token}` } });
    expect([r.statusCode, r.json().error.code, r.headers['retry-after']]).toEqual([429, 'LIMIT', '1']);
    const other = (await c.app.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'tiny' } })).json();
    expect((await c.app.inject({ method: 'GET', url: `/v1/sessions/${other.id}`, headers: { authorization: `Bearer ${other.token}` } })).statusCode).toBe(200);
    await new Promise((res) => setTimeout(res, 1100));
    expect((await c.call('GET', '/')).body.domains).toBe(5);
    await c.app.close();
  });
});
