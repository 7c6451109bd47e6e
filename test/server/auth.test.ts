import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, type Client } from '../support/server.js';

/** Every session route with a body good enough to pass validation, and the least role it needs. */
const ROUTES: Array<[string, string, unknown, 'observer' | 'operator' | 'owner']> = [
  ['GET', '/', undefined, 'observer'],
  ['DELETE', '/', undefined, 'owner'],
  ['POST', '/tokens', { role: 'observer' }, 'owner'],
  ['GET', '/smmus', undefined, 'observer'],
  ['GET', '/smmus/smmu0/contexts/0', undefined, 'observer'],
  ['PATCH', '/smmus/smmu0/contexts/dev0', { faultMode: 'stall' }, 'operator'],
  ['POST', '/smmus/smmu0/contexts/dev0/clear-fault', {}, 'operator'],
  ['POST', '/smmus/smmu0/contexts/dev0/resume', { stall: 'x', action: 'retry' }, 'operator'],
  ['POST', '/smmus/smmu0/contexts/dev0/inject-fault', { kind: 'external' }, 'operator'],
  ['GET', '/smmus/smmu0/mmio/0x0', undefined, 'observer'],
  ['PUT', '/smmus/smmu0/mmio/0x0', { value: 0 }, 'operator'],
  ['POST', '/smmus/smmu0/mmio', { ops: [{ op: 'read', offset: 0 }] }, 'operator'],
  ['POST', '/smmus/smmu0/masters/0/access', { iova: 0, access: 'read' }, 'operator'],
  ['POST', '/domains', {}, 'operator'],
  ['GET', '/domains', undefined, 'observer'],
  ['GET', '/domains/DID', undefined, 'observer'],
  ['DELETE', '/domains/DID', undefined, 'operator'],
  ['POST', '/domains/DID/attach', { device: 'dev0' }, 'operator'],
  ['POST', '/domains/DID/detach', { device: 'dev0' }, 'operator'],
  ['POST', '/domains/DID/map', { iova: 0, paddr: 0x80000000, size: 4096, prot: ['read'] }, 'operator'],
  ['POST', '/domains/DID/unmap', { iova: 0, size: 4096 }, 'operator'],
  ['POST', '/domains/DID/batch', { ops: [{ op: 'unmap', iova: 0, size: 4096 }] }, 'operator'],
  ['GET', '/domains/DID/mappings', undefined, 'observer'],
  ['GET', '/domains/DID/iova-to-phys/0x1000', undefined, 'observer'],
  ['GET', '/domains/DID/pagetable', undefined, 'observer'],
  ['POST', '/domains/DID/flush', {}, 'operator'],
  ['POST', '/domains/DID/sync', undefined, 'operator'],
  ['POST', '/devices/dev0/access', { iova: 0, access: 'read' }, 'operator'],
  ['POST', '/devices/dev0/access-batch', { access: 'read', iovas: [0] }, 'operator'],
  ['GET', '/events', undefined, 'observer'],
  ['GET', '/pools', undefined, 'observer'],
  ['GET', '/buffers', undefined, 'observer'],
  ['POST', '/buffers', { size: 4096 }, 'operator'],
  ['DELETE', '/buffers/0x80000000', undefined, 'operator'],
  ['GET', '/memory?paddr=0x80000000&size=16', undefined, 'observer'],
  ['PUT', '/memory?paddr=0x80000000', { x: 1 }, 'operator'],
  ['GET', '/devices/dev1/dma', undefined, 'observer'],
  ['PATCH', '/devices/dev1/dma', { flushPolicy: 'deferred' }, 'operator'],
  ['POST', '/devices/dev1/dma/map', { paddr: 0x80000000, size: 4096, dir: 'to-device' }, 'operator'],
  ['POST', '/devices/dev1/dma/map-sg', { segments: [{ paddr: 0x80000000, size: 4096 }], dir: 'to-device' }, 'operator'],
  ['POST', '/devices/dev1/dma/unmap', { dmaAddr: 0x1000, size: 4096, dir: 'to-device' }, 'operator'],
  ['POST', '/devices/dev1/dma/sync', { dmaAddr: 0x1000, size: 4096, for: 'cpu' }, 'operator'],
];

describe('auth matrix: every session route', () => {
  let c: Client;
  let other: string;
  let did: string;
  const tokens: Record<string, string> = {};
  beforeAll(async () => {
    c = await client('tiny');
    did = (await c.call('POST', '/domains', {})).body.id;
    const o = await c.app.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'tiny' } });
    other = o.json().token;
    for (const role of ['observer', 'operator'] as const) tokens[role] = (await c.call('POST', '/tokens', { role, label: role })).body.token;
  });
  afterAll(() => c.app.close());

  it.each(ROUTES)('%s %s: 401 without token, 401 with another session\'s token, 403 below its role', async (method, path, body, role) => {
    const url = path.replace('DID', did);
    const rev = (await c.call('GET', '/')).body.revision;
    for (const tok of [null, other, 'garbage']) {
      const r = await c.call(method, url, body, tok);
      expect(r.status).toBe(401);
      expect(r.body.error.code).toBe('UNAUTHORIZED');
    }
    const below = role === 'owner' ? 'operator' : role === 'operator' ? 'observer' : null;
    if (below) {
      const r = await c.call(method, url, body, tokens[below]);
      expect(r.status).toBe(403);
      expect(r.body.error.code).toBe('FORBIDDEN');
    }
    expect((await c.call('GET', '/')).body.revision).toBe(rev);
  });

  it('each request is judged by its own Authorization header, whatever the one before it carried', async () => {
    const get = async (authorization: string) => (await c.app.inject({ method: 'GET', url: `/v1/sessions/${c.sid}`, headers: { authorization } })).statusCode;
    const forms: Array<[string, number]> = [
      [`Bearer ${c.token}`, 200],
      [`bearer  ${c.token}`, 200],
      [`BEARER\t${c.token}`, 200],
      [`Bearer ${c.token} x`, 401],
      [`Bearer ${c.token}x`, 401],
      [`Basic ${c.token}`, 401],
      [`Bearer`, 401],
      [`Bearer ${tokens.observer}`, 200],
    ];
    // Each form twice in a row, then the list again backwards: no answer is carried over to a different header.
    for (const [h, status] of [...forms, ...forms.slice().reverse()]) {
      expect(await get(h), h).toBe(status);
      expect(await get(h), h).toBe(status);
    }
  });

  it('an unknown session id is 401, not 404, so ids cannot be probed', async () => {
    const r = await c.app.inject({ method: 'GET', url: '/v1/sessions/s-nope', headers: { authorization: `Bearer ${c.token}` } });
    expect(r.statusCode).toBe(401);
  });

  it('401 comes before 404 and 403 before validation', async () => {
    expect((await c.call('GET', '/domains/dom-999', undefined, null)).status).toBe(401);
    expect((await c.call('POST', '/domains/dom-999/map', { bogus: 1 }, tokens.observer)).status).toBe(403);
    expect((await c.call('POST', '/domains/dom-999/map', { bogus: 1 })).body.error.code).toBe('NOT_FOUND');
  });
});

describe('?token= only on real WebSocket upgrades of WebSocket routes (regression: any Upgrade header let it in)', () => {
  it('plain HTTP routes with an Upgrade header and ?token= are 401 and change nothing; the event socket takes it', async () => {
    const { connect } = await import('node:net');
    const { default: WebSocket } = await import('ws');
    const { build } = await import('../../src/server/app.js');
    const app = await build();
    try {
      const url = new URL(await app.listen({ port: 0, host: '127.0.0.1' }));
      const created = (await app.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'tiny' } })).json();
      const q = `?token=${encodeURIComponent(created.token)}`;
      // Exactly the bytes given (as curl -H 'Upgrade: ...' sends them): the status line of the answer, or 'closed'.
      const raw = (method: string, path: string, headers: Record<string, string>) =>
        new Promise<number | string>((resolve) => {
          const sock = connect(Number(url.port), url.hostname);
          let got = '';
          sock.on('data', (b) => {
            got += b.toString('latin1');
            const m = /^HTTP\/1\.1 (\d+)/.exec(got);
            if (m) {
              resolve(Number(m[1]));
              sock.destroy();
            }
          });
          sock.on('close', () => resolve('closed'));
          sock.on('error', () => resolve('closed'));
          const head = Object.entries({ host: url.host, 'content-length': '0', ...headers }).map(([k, v]) => `${k}: ${v}\r\n`).join('');
          sock.write(`${method} ${path} HTTP/1.1\r\n${head}\r\n`);
        });
      const upgrade = { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' };
      const sid = `/v1/sessions/${created.id}`;
      expect([
        await raw('POST', `${sid}/tokens${q}`, upgrade),
        await raw('DELETE', `${sid}${q}`, { upgrade: 'websocket' }),
        await raw('GET', `${sid}${q}`, { upgrade: 'h2c' }),
        await raw('GET', `${sid}/domains${q}`, upgrade),
      ]).toEqual([401, 401, 401, 401]);
      expect((await app.inject({ method: 'GET', url: sid, headers: { authorization: `Bearer ${created.token}` } })).statusCode).toBe(200);
      const ws = new WebSocket(`ws://${url.host}${sid}/events${q}`);
      await new Promise((r, j) => ws.once('open', r).once('error', j));
      ws.close();
    } finally {
      await app.close();
    }
  });
});

describe('the last header is not trusted past a change of the token table', () => {
  it('a token dropped by a restore of the session state is refused on the next request with the same header', async () => {
    const c = await client('tiny');
    try {
      const minted = (await c.call('POST', '/tokens', { role: 'operator' })).body as { token: string };
      const other = await c.call('POST', '/v1/sessions', { profile: 'tiny' }, null);
      const s = c.app.registry.get(c.sid)!;
      const before = JSON.parse(JSON.stringify(s.snapshot()));
      // Same header twice (the second answered from the memo), another session's request in between, then again.
      expect((await c.call('GET', '/', undefined, minted.token)).status).toBe(200);
      expect((await c.call('GET', '/', undefined, minted.token)).status).toBe(200);
      expect((await c.call('GET', `/v1/sessions/${(other.body as { id: string }).id}`, undefined, minted.token)).status).toBe(401);
      expect((await c.call('GET', '/', undefined, minted.token)).status).toBe(200);
      // The state goes back to one without the minted token (as a rollback after a failed journal write does).
      s.restoreSnapshot({ ...before, tokens: before.tokens.filter((t: { role: string }) => t.role !== 'operator') });
      expect((await c.call('GET', '/', undefined, minted.token)).status).toBe(401);
      expect((await c.call('GET', '/', undefined, minted.token)).status).toBe(401);
      expect((await c.call('GET', '/')).status).toBe(200);
    } finally {
      await c.app.close();
    }
  });
});
