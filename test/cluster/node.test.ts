import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isNodeId, nodeOfSession } from '../../src/cluster/node.js';
import { build } from '../../src/server/app.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('cluster node id', () => {
  it('prefixes every session id with the node id, followed by lower-case hex only', async () => {
    const app = await build({ nodeId: 'n2', validateResponses: true });
    const ids: string[] = [];
    // 20 sessions: the per-daemon counter passes 0xf, where a base-36 counter would print letters past f.
    for (let i = 0; i < 20; i++) ids.push((await app.inject({ method: 'POST', url: '/v1/sessions', payload: {} })).json().id);
    for (const id of ids) expect(id).toMatch(/^n2-[0-9a-f]+$/);
    expect(new Set(ids).size).toBe(20);
    expect(ids.map(nodeOfSession)).toEqual(Array(20).fill('n2'));
    await app.close();
  });

  it('defaults to s: ids keep their v1 shape s-<hex>', async () => {
    const app = await build({ validateResponses: true });
    for (let i = 0; i < 18; i++) expect((await app.inject({ method: 'POST', url: '/v1/sessions', payload: {} })).json().id).toMatch(/^s-[0-9a-f]+$/);
    expect((await app.inject({ method: 'GET', url: '/health' })).json()).toMatchObject({ status: 'ok', node: 's', sessions: 18 });
    await app.close();
  });

  it('/health and /v1/version report the node; version lists the cluster capability', async () => {
    const app = await build({ nodeId: 'rig7', validateResponses: true });
    const health = (await app.inject({ method: 'GET', url: '/health' })).json();
    expect(health).toEqual({ status: 'ok', node: 'rig7', sessions: 0, uptime: health.uptime });
    const version = (await app.inject({ method: 'GET', url: '/v1/version' })).json();
    expect(version.node).toBe('rig7');
    expect(version.capabilities).toContain('cluster');
    await app.close();
  });

  it('accepts 1-16 lower-case letters and digits only', async () => {
    for (const good of ['s', 'n1', '0', 'abcdefghij012345']) expect(isNodeId(good)).toBe(true);
    for (const bad of ['', 'N1', 'n-1', 'n_1', 'abcdefghij0123456', 'n1 ', 'é']) expect(isNodeId(bad)).toBe(false);
    await expect(build({ nodeId: 'N1' })).rejects.toThrow('bad node id "N1"');
  });

  it('names the node of a session id by its first dash', () => {
    expect(nodeOfSession('n12-1a2b')).toBe('n12');
    expect(nodeOfSession('s-1')).toBe('s');
    expect(nodeOfSession('nodash')).toBeNull();
    expect(nodeOfSession('-1')).toBeNull();
  });
});

describe('persist: per-session persistence', () => {
  it('with a data dir every session is journaled unless created with persist: false', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'iommud-'));
    dirs.push(dir);
    const a = await build({ dataDir: dir, nodeId: 'n1' });
    const kept = (await a.inject({ method: 'POST', url: '/v1/sessions', payload: { name: 'kept' } })).json();
    const alsoKept = (await a.inject({ method: 'POST', url: '/v1/sessions', payload: { name: 'also', persist: true } })).json();
    const gone = (await a.inject({ method: 'POST', url: '/v1/sessions', payload: { name: 'scratch', persist: false } })).json();
    expect(gone.id).toMatch(/^n1-[0-9a-f]+$/);
    const call = (sid: string, token: string) => a.inject({ method: 'POST', url: `/v1/sessions/${sid}/domains`, headers: { authorization: `Bearer ${token}` }, payload: {} });
    expect((await call(gone.id, gone.token)).statusCode).toBe(201);
    expect((await call(kept.id, kept.token)).statusCode).toBe(201);
    expect(readdirSync(dir).sort()).toEqual([`${alsoKept.id}.journal`, `${kept.id}.journal`].sort());
    await a.close();

    const b = await build({ dataDir: dir, nodeId: 'n1' });
    expect((await b.inject({ method: 'GET', url: '/health' })).json().sessions).toBe(2);
    expect((await b.inject({ method: 'GET', url: `/v1/sessions/${kept.id}`, headers: { authorization: `Bearer ${kept.token}` } })).json()).toMatchObject({ id: kept.id, name: 'kept', revision: 1 });
    expect((await b.inject({ method: 'GET', url: `/v1/sessions/${gone.id}`, headers: { authorization: `Bearer ${gone.token}` } })).statusCode).toBe(401);
    await b.close();
  });

  it('persist: true on a daemon without a data dir is refused (it could not be honoured)', async () => {
    const app = await build({ validateResponses: true });
    const res = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { persist: true } });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({ error: { code: 'BAD_REQUEST', message: 'persist: true needs a daemon started with --data-dir', details: { field: 'persist' } } });
    expect((await app.inject({ method: 'GET', url: '/health' })).json().sessions).toBe(0);
    expect((await app.inject({ method: 'POST', url: '/v1/sessions', payload: { persist: false } })).statusCode).toBe(201);
    await app.close();
  });
});
