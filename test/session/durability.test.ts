/**
 * Issue 11, durability: every 2xx survives a restart whatever failed in between, every refusal (429, 503)
 * changed nothing, and damaged files stop that session's restore loudly instead of restoring less.
 */
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { build } from '../../src/server/app.js';
import { encodeRecord } from '../../src/session/journal.js';

type App = Awaited<ReturnType<typeof build>>;
const dirs: string[] = [];
const apps: App[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'iommud-dur-'));
  dirs.push(d);
  return d;
};
async function open(opts: Parameters<typeof build>[0]): Promise<App> {
  const a = await build(opts);
  apps.push(a);
  return a;
}
afterEach(async () => {
  for (const a of apps.splice(0)) await a.close().catch(() => {});
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function newSession(a: App, body: object = { profile: 'tiny' }) {
  const s = (await a.inject({ method: 'POST', url: '/v1/sessions', payload: body })).json();
  const call = (method: string, url: string, payload?: object) =>
    a.inject({ method: method as 'POST', url: `/v1/sessions/${s.id}${url}`, headers: { authorization: `Bearer ${s.token}` }, ...(payload ? { payload } : {}) });
  return { id: s.id as string, token: s.token as string, call };
}

const page = (p: number) => ({ iova: p * 4096, paddr: '0x80000000', size: 4096, prot: ['read'] });
async function mappedPages(call: (m: string, u: string) => Promise<{ json(): unknown }>): Promise<number[]> {
  const maps = (await call('GET', '/domains/dom-1/mappings?limit=100000')).json() as Array<{ iova: string; size: number }>;
  const out: number[] = [];
  for (const m of maps) for (let a = Number(m.iova); a < Number(m.iova) + m.size; a += 4096) out.push(a / 4096);
  return out;
}

/** Makes the journal's writes fail as a full disk does (ENOSPC), until `restore()`. */
function diskFull(a: App, sid: string): () => void {
  const j = a.registry.get(sid)!.journal! as unknown as { fd: number };
  const real = j.fd;
  j.fd = openSync('/dev/full', 'w');
  return () => {
    closeSync(j.fd);
    j.fd = real;
  };
}

describe('compaction never loses an acknowledged write (item 1)', () => {
  it('the snapshot is written but the journal reset fails: later 2xx mutations are restored', async () => {
    const dir = tmp();
    const a = await open({ dataDir: dir, compactEvery: 0 });
    const s = await newSession(a);
    expect((await s.call('POST', '/domains', {})).statusCode).toBe(201);
    for (let p = 1; p <= 3; p++) expect((await s.call('POST', '/domains/dom-1/map', page(p))).statusCode).toBe(200);
    const session = a.registry.get(s.id)!;
    const journal = session.journal!;
    journal.resetSync = () => {
      throw new Error('EIO: simulated failure restarting the journal');
    };
    expect(() => session.compact()).toThrow('EIO');
    expect(existsSync(join(dir, `${s.id}.snap`))).toBe(true);
    // The session goes on writing where restore reads: these are acknowledged and must come back.
    for (let p = 4; p <= 6; p++) expect((await s.call('POST', '/domains/dom-1/map', page(p))).statusCode).toBe(200);
    await a.close();
    const b = await open({ dataDir: dir });
    const again = await newSession(b);
    expect(again.id).not.toBe(s.id);
    const call = (m: string, u: string) => b.inject({ method: m as 'GET', url: `/v1/sessions/${s.id}${u}`, headers: { authorization: `Bearer ${s.token}` } });
    expect(await mappedPages(call)).toEqual([1, 2, 3, 4, 5, 6]);
    // A later compaction that succeeds goes on from there.
    const c = b.registry.get(s.id)!;
    c.compact();
    expect((await b.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains/dom-1/map`, headers: { authorization: `Bearer ${s.token}` }, payload: page(7) })).statusCode).toBe(200);
    await b.close();
    const d = await open({ dataDir: dir });
    const call2 = (m: string, u: string) => d.inject({ method: m as 'GET', url: `/v1/sessions/${s.id}${u}`, headers: { authorization: `Bearer ${s.token}` } });
    expect(await mappedPages(call2)).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });
});

describe('a refusal changes nothing (item 3)', () => {
  it('access-batch in stall mode past the stall limit: 429, no stall, FSR, FAR or revision changed', async () => {
    const a = await open({});
    const s = await newSession(a, {});
    await s.call('POST', '/domains', {});
    await s.call('POST', '/domains/dom-1/attach', { device: 'vfe_imgwr' });
    await s.call('PATCH', '/smmus/vfe/contexts/vfe_imgwr', { faultMode: 'stall' });
    const before = (await s.call('GET', '/smmus/vfe/contexts/vfe_imgwr')).json();
    const rev = (await s.call('GET', '/')).json().revision;
    const iovas = Array.from({ length: 100 }, (_, i) => `0x${(0x20000000 + i * 4096).toString(16)}`);
    const r = await s.call('POST', '/devices/vfe_imgwr/access-batch', { access: 'read', iovas });
    expect([r.statusCode, r.json().error.code, r.json().error.details]).toEqual([429, 'LIMIT', { limit: 64, stalled: 0, items: 100 }]);
    expect((await s.call('GET', '/smmus/vfe/contexts/vfe_imgwr')).json()).toEqual(before);
    expect(before.registers.FSR).toBe('0x0');
    expect((await s.call('GET', '/')).json().revision).toBe(rev);
    // Within the room it goes through: 64 stalls.
    const ok = await s.call('POST', '/devices/vfe_imgwr/access-batch', { access: 'read', iovas: iovas.slice(0, 64) });
    expect(ok.statusCode).toBe(200);
    expect(ok.json().results.filter((x: { outcome: string }) => x.outcome === 'stalled')).toHaveLength(64);
  });

  it('a journal failure answers 503 and undoes the change: revision and domains as before, its event numbers stay used', async () => {
    const dir = tmp();
    const a = await open({ dataDir: dir });
    const s = await newSession(a);
    await s.call('POST', '/domains', {});
    const before = (await s.call('GET', '/')).json();
    const heal = diskFull(a, s.id);
    const r = await s.call('POST', '/domains', {});
    expect([r.statusCode, r.json().error.code]).toEqual([503, 'UNAVAILABLE']);
    expect((await s.call('GET', '/')).json()).toEqual({ ...before, lastSeq: before.lastSeq + 1 });
    expect((await s.call('GET', '/domains')).json()).toHaveLength(1);
    heal();
    await a.close();
    // Nor does it come back with a restart (and seq continues past the withdrawn number).
    const b = await open({ dataDir: dir });
    expect((await b.inject({ method: 'GET', url: `/v1/sessions/${s.id}`, headers: { authorization: `Bearer ${s.token}` } })).json()).toEqual({ ...before, lastSeq: before.lastSeq + 1, subscribers: 0 });
  });
});

describe('no rejection is left unhandled (item 2)', () => {
  it('a DMA-debug refusal (recorded for its events) on a full disk: 409, and no unhandled rejection', async () => {
    const dir = tmp();
    const a = await open({ dataDir: dir });
    const s = await newSession(a, {});
    expect((await s.call('POST', '/devices/rot_src/dma/map', { paddr: '0x40100010', size: 100, dir: 'to-device' })).statusCode).toBe(200);
    const heal = diskFull(a, s.id);
    const bad = await s.call('POST', '/devices/rot_src/dma/unmap', { dmaAddr: '0xfffff010', size: 99, dir: 'to-device' });
    expect([bad.statusCode, bad.json().error.code]).toEqual([409, 'DMA_DEBUG']);
    await a.registry.get(s.id)!.journal!.flush();
    expect(a.registry.get(s.id)!.journal!.failed?.message).toContain('ENOSPC');
    heal();
  });
});

describe('a full disk, then room again (item 23)', () => {
  it('the 503 clears at the next mutation once writes succeed; the restart holds the 2xx, not the 503', async () => {
    const dir = tmp();
    const a = await open({ dataDir: dir });
    const s = await newSession(a);
    await s.call('POST', '/domains', {});
    await s.call('POST', '/domains/dom-1/map', page(1));
    const heal = diskFull(a, s.id);
    expect((await s.call('POST', '/domains/dom-1/map', page(2))).statusCode).toBe(503);
    expect((await a.inject({ method: 'GET', url: '/metrics' })).body).toContain('iommud_journal_failed_sessions 1');
    heal();
    expect((await s.call('POST', '/domains/dom-1/map', page(3))).statusCode).toBe(200);
    expect((await a.inject({ method: 'GET', url: '/metrics' })).body).toContain('iommud_journal_failed_sessions 0');
    expect(await mappedPages(s.call)).toEqual([1, 3]);
    await a.close();
    const b = await open({ dataDir: dir });
    const call = (m: string, u: string) => b.inject({ method: m as 'GET', url: `/v1/sessions/${s.id}${u}`, headers: { authorization: `Bearer ${s.token}` } });
    expect(await mappedPages(call)).toEqual([1, 3]);
  });

  it('the data dir deleted under the daemon: mutations answer 503 (not 200 into unlinked files), reads work', async () => {
    const dir = tmp();
    const a = await open({ dataDir: dir });
    const s = await newSession(a);
    await s.call('POST', '/domains', {});
    rmSync(dir, { recursive: true, force: true });
    const r = await s.call('POST', '/domains', {});
    expect([r.statusCode, r.json().error.code]).toEqual([503, 'UNAVAILABLE']);
    expect((await s.call('POST', '/domains', {})).statusCode).toBe(503);
    expect((await s.call('GET', '/')).statusCode).toBe(200);
    // Minting a token is a mutation too: 503, not 500.
    const t = await s.call('POST', '/tokens', { role: 'observer' });
    expect([t.statusCode, t.json().error.code]).toEqual([503, 'UNAVAILABLE']);
    // Deleting cannot remove the journal: 503 and the session stays.
    const del = await s.call('DELETE', '/');
    expect([del.statusCode, del.json().error.code]).toEqual([503, 'UNAVAILABLE']);
    expect((await s.call('GET', '/')).statusCode).toBe(200);
  });
});

describe('damaged files stop that session only, loudly (items 15, 16)', () => {
  async function twoSessions() {
    const dir = tmp();
    const a = await open({ dataDir: dir });
    const good = await newSession(a);
    const bad = await newSession(a);
    for (const x of [good, bad]) {
      await x.call('POST', '/domains', {});
      for (let p = 1; p <= 5; p++) await x.call('POST', '/domains/dom-1/map', page(p));
    }
    await a.close();
    return { dir, good, bad };
  }
  async function restoreWithLog(dir: string) {
    const logs: string[] = [];
    const b = await open({ dataDir: dir, logger: { level: 'warn', stream: { write: (l: string) => logs.push(l) } } as never });
    return { b, logs: logs.map((l) => JSON.parse(l)) };
  }

  it('a corrupt record in the middle of a journal: that session is not restored, the error names file and offset, the file is kept', async () => {
    const { dir, good, bad } = await twoSessions();
    const path = join(dir, `${bad.id}.journal`);
    const text = readFileSync(path, 'utf8');
    const lines = text.split('\n');
    const offset = Buffer.byteLength(lines.slice(0, 3).join('\n') + '\n');
    lines[3] = '00000000' + lines[3]!.slice(8); // the 4th record: bad checksum, intact records after it
    writeFileSync(path, lines.join('\n'));
    const damaged = readFileSync(path);
    const { b, logs } = await restoreWithLog(dir);
    expect(b.registry.get(good.id)).toBeDefined();
    expect(b.registry.get(bad.id)).toBeUndefined();
    expect(readFileSync(path)).toEqual(damaged);
    const msg = logs.find((l) => l.path === path);
    expect(msg.error).toContain(`${path}: corrupt record at byte ${offset}`);
  });

  it('a snapshot that fails its checksum: that session is not restored (not restored empty), its files are kept', async () => {
    const { dir, good, bad } = await twoSessions();
    const c = await open({ dataDir: dir });
    c.registry.get(bad.id)!.compact();
    await c.close();
    const snap = join(dir, `${bad.id}.snap`);
    const text = readFileSync(snap, 'utf8');
    writeFileSync(snap, text.replace('"revision":', '"revision":1')); // one byte more: the checksum no longer matches
    const { b, logs } = await restoreWithLog(dir);
    expect(b.registry.get(good.id)).toBeDefined();
    expect(b.registry.get(bad.id)).toBeUndefined();
    expect(readdirSync(dir).sort()).toEqual([`${bad.id}.journal`, `${bad.id}.snap`, `${good.id}.journal`].sort());
    expect(logs.find((l) => l.path?.endsWith(`${bad.id}.journal`)).error).toContain(`snapshot ${snap} fails its checksum`);
  });

  it('bad bytes at the very end are a torn tail: cut, and the rest restored', async () => {
    const { dir, bad } = await twoSessions();
    const path = join(dir, `${bad.id}.journal`);
    const whole = readFileSync(path);
    writeFileSync(path, Buffer.concat([whole, Buffer.from('00000000 {"seq":99}\n' + encodeRecord({ seq: 100 }).slice(0, 10))]));
    const { b } = await restoreWithLog(dir);
    expect(b.registry.get(bad.id)).toBeDefined();
    expect(readFileSync(path)).toEqual(whole);
  });
});

describe('sessions: quota and leftovers (items 17, 18, 20)', () => {
  it('with --data-dir, 200 concurrent creates make exactly maxSessions sessions, before and after a restart', async () => {
    const dir = tmp();
    const a = await open({ dataDir: dir, limits: { maxSessions: 64 } });
    const rs = await Promise.all(Array.from({ length: 200 }, () => a.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'tiny' } })));
    expect(rs.filter((r) => r.statusCode === 201)).toHaveLength(64);
    expect(rs.filter((r) => r.statusCode === 429)).toHaveLength(136);
    await a.close();
    expect(readdirSync(dir)).toHaveLength(64);
    const b = await open({ dataDir: dir, limits: { maxSessions: 64 } });
    expect((await b.inject({ method: 'GET', url: '/health' })).json().sessions).toBe(64);
  });

  it('a trace replay that cannot be stored is refused with 4xx and leaves no journal behind', async () => {
    const dir = tmp();
    const a = await open({ dataDir: dir });
    let deep = '{"a":1}';
    for (let i = 0; i < 5000; i++) deep = `{"x":${deep}}`;
    const header = JSON.stringify({ format: 'iommud-trace', version: 1, session: { id: 's-x', name: 'deep', profile: 'tiny', tlbEntries: 16, tlbPolicy: 'lru', stallTimeoutMs: 30000, createdAt: '2026-01-01T00:00:00.000Z' } });
    const trace = `${header}\n{"seq":1,"time":"x","by":null,"cmd":{"op":"domain-alloc","label":"d","extra":${deep}}}\n`;
    const r = await a.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'tiny', trace } });
    expect(r.statusCode).toBeGreaterThanOrEqual(400);
    expect(r.statusCode).toBeLessThan(500);
    expect(readdirSync(dir)).toEqual([]);
    expect((await a.inject({ method: 'GET', url: '/health' })).json().sessions).toBe(0);
  });

  it.each(['__proto__', 'constructor', 'toString', 'hasOwnProperty'])('profile %j is an unknown profile (400), not a 500', async (name) => {
    const a = await open({});
    const r = await a.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: name } });
    expect([r.statusCode, r.json().error.code]).toEqual([400, 'BAD_REQUEST']);
  });
});

describe('traces that start from a snapshot', () => {
  it('a session replayed from a post-compaction trace survives a restart', async () => {
    const dir = tmp();
    const a = await open({ dataDir: dir, compactEvery: 0 });
    const s = await newSession(a);
    await s.call('POST', '/domains', {});
    for (let p = 1; p <= 3; p++) await s.call('POST', '/domains/dom-1/map', page(p));
    a.registry.get(s.id)!.compact();
    await s.call('POST', '/domains/dom-1/map', page(4));
    const trace = (await s.call('GET', '/trace')).body;
    const copy = (await a.inject({ method: 'POST', url: '/v1/sessions', payload: { trace } })).json();
    await a.close();
    const b = await open({ dataDir: dir });
    const call = (m: string, u: string) => b.inject({ method: m as 'GET', url: `/v1/sessions/${copy.id}${u}`, headers: { authorization: `Bearer ${copy.token}` } });
    expect(await mappedPages(call)).toEqual([1, 2, 3, 4]);
  });
});
