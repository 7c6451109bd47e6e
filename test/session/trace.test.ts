/**
 * Traces are input like any other (issue 11, items 10 and 14): the header is held to the bounds of a
 * session-creation body, and a replayed session holds only the tokens minted for it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { build } from '../../src/server/app.js';
import { hashToken } from '../../src/session/session.js';

const H = (t: string) => ({ authorization: `Bearer ${t}` });

async function exported(app: FastifyInstance, profile: unknown = 'tiny'): Promise<{ id: string; token: string; lines: any[] }> {
  const { id, token } = (await app.inject({ method: 'POST', url: '/v1/sessions', payload: { profile } })).json();
  await app.inject({ method: 'POST', url: `/v1/sessions/${id}/domains`, headers: H(token), payload: {} });
  await app.inject({ method: 'POST', url: `/v1/sessions/${id}/domains/dom-1/map`, headers: H(token), payload: { iova: 0, paddr: '0x80000000', size: 4096, prot: ['read'] } });
  const text = (await app.inject({ method: 'GET', url: `/v1/sessions/${id}/trace`, headers: H(token) })).body;
  return { id, token, lines: text.trim().split('\n').map((l) => JSON.parse(l)) };
}

const asTrace = (lines: unknown[]) => lines.map((l) => JSON.stringify(l)).join('\n') + '\n';
const count = async (app: FastifyInstance) => (await app.inject({ method: 'GET', url: '/health' })).json().sessions as number;

describe('trace headers get the same checks as POST /v1/sessions (item 10)', () => {
  let app: FastifyInstance;
  let lines: any[];
  beforeAll(async () => {
    app = await build();
    lines = (await exported(app)).lines;
  });
  afterAll(() => app.close());

  const many = Array.from({ length: 5000 }, (_, i) => ({ name: `s${i}`, base: 0x100000 * (i % 4000), banks: 1, contexts: [] }));
  const cases: Array<[string, (h: any) => unknown]> = [
    ['tlbEntries 3e8 (used to exhaust the heap)', (h) => ({ ...h, session: { ...h.session, tlbEntries: 3e8 } })],
    ['tlbEntries "abc"', (h) => ({ ...h, session: { ...h.session, tlbEntries: 'abc' } })],
    ['tlbEntries -5', (h) => ({ ...h, session: { ...h.session, tlbEntries: -5 } })],
    ['a bogus TLB policy', (h) => ({ ...h, session: { ...h.session, tlbPolicy: 'random' } })],
    ['a 1 MB name', (h) => ({ ...h, session: { ...h.session, name: 'n'.repeat(1024 * 1024) } })],
    ['a 5,000-SMMU profile', (h) => ({ ...h, session: { ...h.session, profile: { ...h.session.profile, smmus: many } } })],
    ['no session (used to be a 500)', (h) => ({ format: h.format, version: h.version })],
    ['a null profile (used to be a 500)', (h) => ({ ...h, session: { ...h.session, profile: null } })],
    ['profile "__proto__"', (h) => ({ ...h, session: { ...h.session, profile: '__proto__' } })],
    ['a stall timeout of 0', (h) => ({ ...h, session: { ...h.session, stallTimeoutMs: 0 } })],
    ['a header that is a list', () => [1, 2, 3]],
  ];
  for (const [name, mutate] of cases) {
    it(`${name}: 400 BAD_REQUEST, no session made`, async () => {
      const n = await count(app);
      const r = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { trace: asTrace([mutate(lines[0]), ...lines.slice(1)]) } });
      expect(r.statusCode, r.body.slice(0, 300)).toBe(400);
      expect(r.json().error.code).toBe('BAD_REQUEST');
      expect(await count(app)).toBe(n);
    });
  }

  it('an exported header replays; a header may name a built-in profile', async () => {
    const ok = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { trace: asTrace(lines) } });
    expect(ok.statusCode).toBe(201);
    expect(ok.json().profile).toBe('tiny');
    const named = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { trace: asTrace([{ ...lines[0], session: { ...lines[0].session, profile: 'tiny' } }, ...lines.slice(1)]) } });
    expect(named.statusCode).toBe(201);
    const { id, token } = named.json();
    expect((await app.inject({ method: 'GET', url: `/v1/sessions/${id}/domains/dom-1/iova-to-phys/0x0`, headers: H(token) })).json().paddr).toBe('0x80000000');
  });
});

describe('trace replay ignores tokens (item 14)', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('a token record in a trace plants nothing: the planted token is 401, the minted one works', async () => {
    const app = await build();
    const { lines } = await exported(app);
    const planted = 'planted-owner-token-of-the-trace-author';
    const trace = asTrace([lines[0], { token: { hash: hashToken(planted), role: 'owner', label: 'mallory' } }, ...lines.slice(1)]);
    const r = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { trace } });
    expect(r.statusCode).toBe(201);
    const { id, token } = r.json();
    expect((await app.inject({ method: 'GET', url: `/v1/sessions/${id}`, headers: H(planted) })).statusCode).toBe(401);
    expect((await app.inject({ method: 'DELETE', url: `/v1/sessions/${id}`, headers: H(planted) })).statusCode).toBe(401);
    expect((await app.inject({ method: 'GET', url: `/v1/sessions/${id}`, headers: H(token) })).json().domains).toBe(1);
    await app.close();
  });

  it('tokens inside a trace snapshot (a compacted export) plant nothing either, with --data-dir', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'iommud-trace-'));
    dirs.push(dir);
    const app = await build({ dataDir: dir, compactEvery: 2 });
    const { id, token, lines: first } = await exported(app);
    // Wait for the compaction the map scheduled, then export again: the trace now starts from a snapshot.
    await new Promise((r) => setImmediate(r));
    const lines = (await app.inject({ method: 'GET', url: `/v1/sessions/${id}/trace`, headers: H(token) })).body.trim().split('\n').map((l) => JSON.parse(l));
    expect(first.length).toBeGreaterThan(1);
    const snapAt = lines.findIndex((l) => l.snapshot);
    expect(snapAt).toBe(1);
    const planted = 'planted-owner-token-in-a-snapshot';
    lines[snapAt].snapshot.tokens = [{ hash: hashToken(planted), role: 'owner', label: 'mallory' }];
    const r = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { trace: asTrace(lines) } });
    expect(r.statusCode, r.body).toBe(201);
    const made = r.json();
    expect((await app.inject({ method: 'GET', url: `/v1/sessions/${made.id}`, headers: H(planted) })).statusCode).toBe(401);
    expect((await app.inject({ method: 'GET', url: `/v1/sessions/${made.id}`, headers: H(made.token) })).json().domains).toBe(1);
    await app.close();
    // ...and after a restart, restored from its journal, still only the minted token.
    const again = await build({ dataDir: dir });
    expect((await again.inject({ method: 'GET', url: `/v1/sessions/${made.id}`, headers: H(planted) })).statusCode).toBe(401);
    expect((await again.inject({ method: 'GET', url: `/v1/sessions/${made.id}`, headers: H(made.token) })).statusCode).toBe(200);
    await again.close();
  });
});
