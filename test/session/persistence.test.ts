import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { build } from '../../src/server/app.js';
import { encodeRecord } from '../../src/session/journal.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'iommud-'));
  dirs.push(d);
  return d;
};

async function snapshot(app: Awaited<ReturnType<typeof build>>, sid: string, token: string) {
  const get = async (url: string) => (await app.inject({ method: 'GET', url: `/v1/sessions/${sid}${url}`, headers: { authorization: `Bearer ${token}` } })).json();
  const domains = await get('/domains');
  const tables = await Promise.all(domains.map((d: { id: string }) => get(`/domains/${d.id}/pagetable`)));
  const session = await get('/');
  return { domains, tables, smmus: (await get('/smmus')).map((s: any) => ({ ...s, tlb: undefined, contexts: s.contexts.map((c: any) => ({ ...c, tlb: undefined })) })), revision: session.revision, lastSeq: session.lastSeq, pools: session.pools };
}

async function script(app: Awaited<ReturnType<typeof build>>, sid: string, token: string) {
  const call = (method: string, url: string, payload?: object) =>
    app.inject({ method: method as 'POST', url: `/v1/sessions/${sid}${url}`, headers: { authorization: `Bearer ${token}` }, ...(payload ? { payload } : {}) });
  const d = (await call('POST', '/domains', { flushPolicy: 'deferred' })).json().id;
  await call('POST', `/domains/${d}/attach`, { device: 'vfe_imgwr' });
  await call('POST', `/domains/${d}/map`, { iova: '0x10000000', paddr: '0x40000000', size: '0x1000000', prot: ['read', 'write'] });
  await call('POST', `/domains/${d}/map`, { iova: '0x20010000', paddr: '0x40010000', size: '0x30000', prot: ['read'] });
  await call('POST', `/domains/${d}/unmap`, { iova: '0x10003000', size: '0x1000' });
  await call('POST', '/devices/vfe_imgwr/access', { iova: '0x20010000', access: 'write' });
  await call('POST', '/devices/vfe_imgwr/access', { iova: '0x10000000', access: 'write', data: Buffer.from('persist me').toString('base64') });
  await call('PATCH', '/smmus/vpe/contexts/vpe_src', { faultMode: 'stall' });
  await call('PUT', '/smmus/jpegd/mmio/0x10', { value: '0x40400000' });
  await call('POST', '/buffers', { size: '0x200000' });
  await call('POST', '/devices/rot_src/dma/map', { paddr: '0x40800000', size: 8192, dir: 'bidirectional' });
  return d;
}

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('persistence: journal and restore', () => {
  it('a restarted daemon restores every session to its last acknowledged state, tokens included', async () => {
    const dir = tmp();
    const a = await build({ dataDir: dir });
    const s = (await a.inject({ method: 'POST', url: '/v1/sessions', payload: { name: 'cam' } })).json();
    await script(a, s.id, s.token);
    const obs = (await a.inject({ method: 'POST', url: `/v1/sessions/${s.id}/tokens`, headers: { authorization: `Bearer ${s.token}` }, payload: { role: 'observer', label: 'bob' } })).json().token;
    const before = await snapshot(a, s.id, s.token);
    const mem = (await a.inject({ method: 'GET', url: `/v1/sessions/${s.id}/memory?paddr=0x40000000&size=10`, headers: { authorization: `Bearer ${s.token}` } })).rawPayload;
    await a.close();

    const b = await build({ dataDir: dir });
    expect((await b.inject({ method: 'GET', url: '/health' })).json().sessions).toBe(1);
    expect(await snapshot(b, s.id, obs)).toEqual(before);
    expect((await b.inject({ method: 'GET', url: `/v1/sessions/${s.id}/memory?paddr=0x40000000&size=10`, headers: { authorization: `Bearer ${obs}` } })).rawPayload).toEqual(mem);
    expect(mem.toString()).toBe('persist me');
    // The restored session exports its trace from the journal; replayed, it gives the same state.
    const trace = (await b.inject({ method: 'GET', url: `/v1/sessions/${s.id}/trace`, headers: { authorization: `Bearer ${obs}` } })).body;
    expect(trace).not.toContain('"token"');
    const copy = (await b.inject({ method: 'POST', url: '/v1/sessions', payload: { trace } })).json();
    expect({ ...(await snapshot(b, copy.id, copy.token)), lastSeq: 0 }).toEqual({ ...before, lastSeq: 0 });
    await b.inject({ method: 'DELETE', url: `/v1/sessions/${copy.id}`, headers: { authorization: `Bearer ${copy.token}` } });
    // seq keeps rising from where it was.
    const d = (await b.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains`, headers: { authorization: `Bearer ${s.token}` }, payload: {} })).json();
    expect(d.id).toBe('dom-3');
    expect((await snapshot(b, s.id, s.token)).lastSeq).toBe(before.lastSeq + 1);
    // Deleting the session removes its journal.
    await b.inject({ method: 'DELETE', url: `/v1/sessions/${s.id}`, headers: { authorization: `Bearer ${s.token}` } });
    expect(readdirSync(dir)).toEqual([]);
    await b.close();
  });

  it('a torn final record is dropped, never half-applied; the journal is cut back to its last whole record', async () => {
    const dir = tmp();
    const a = await build({ dataDir: dir });
    const s = (await a.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'tiny' } })).json();
    await a.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains`, headers: { authorization: `Bearer ${s.token}` }, payload: {} });
    const before = await snapshot(a, s.id, s.token);
    await a.close();
    const path = join(dir, readdirSync(dir)[0]!);
    const good = readFileSync(path);
    // Half of a record, then a record with a bad checksum.
    const rec = encodeRecord({ seq: 99, time: 'x', by: null, cmd: { op: 'domain-alloc' } });
    appendFileSync(path, rec.slice(0, rec.length / 2));
    const b = await build({ dataDir: dir });
    expect(await snapshot(b, s.id, s.token)).toEqual(before);
    expect(readFileSync(path)).toEqual(good);
    await b.close();
    appendFileSync(path, '00000000' + rec.slice(8));
    const c = await build({ dataDir: dir });
    expect(await snapshot(c, s.id, s.token)).toEqual(before);
    await c.close();
  });

  it('a journal of a newer format is not restored; a trace of a newer format is refused', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 's-x.journal'), encodeRecord({ format: 'iommud-trace', version: 99, session: {} }));
    const a = await build({ dataDir: dir });
    expect((await a.inject({ method: 'GET', url: '/health' })).json().sessions).toBe(0);
    const r = await a.inject({ method: 'POST', url: '/v1/sessions', payload: { trace: JSON.stringify({ format: 'iommud-trace', version: 2, session: {} }) } });
    expect([r.statusCode, r.json().error.code]).toEqual([400, 'BAD_REQUEST']);
    expect(r.json().error.message).toContain('newer');
    await a.close();
  });

  it('a persistence failure turns a mutation into 503 that changed nothing; reads keep working; the next mutation retries', async () => {
    const dir = tmp();
    const a = await build({ dataDir: dir });
    const s = (await a.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'tiny' } })).json();
    const h = { authorization: `Bearer ${s.token}` };
    const session = a.registry.get(s.id)!;
    // The baseline comes before the failing request: a 503 must leave the session exactly as it was.
    const before = (await a.inject({ method: 'GET', url: `/v1/sessions/${s.id}`, headers: h })).json();
    // The file goes away under the journal (as a failed disk would make the write fail).
    session.journal!.breakForTest();
    const r1 = await a.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains`, headers: h, payload: {} });
    expect([r1.statusCode, r1.json().error.code]).toEqual([503, 'UNAVAILABLE']);
    const g = await a.inject({ method: 'GET', url: `/v1/sessions/${s.id}`, headers: h });
    // Nothing changed but the event seq: the withdrawn event's number is never given again (API.md: seq rises).
    expect([g.statusCode, g.json()]).toEqual([200, { ...before, lastSeq: before.lastSeq + 1 }]);
    expect((await a.inject({ method: 'GET', url: '/metrics' })).body).toContain('iommud_journal_failed_sessions 1');
    // The journal file is still there: the next mutation reopens it and goes through.
    const r2 = await a.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains`, headers: h, payload: {} });
    expect([r2.statusCode, r2.json().id]).toEqual([201, 'dom-1']);
    await a.close();
    const b = await build({ dataDir: dir });
    expect((await b.inject({ method: 'GET', url: `/v1/sessions/${s.id}`, headers: h })).json()).toEqual({ ...before, revision: 1, domains: 1, lastSeq: before.lastSeq + 2 });
    await b.close();
  });
});

describe('trace export and replay', () => {
  it('replaying a trace gives an identical session: page tables bit for bit, registers, pools; twice the same', async () => {
    const app = await build();
    const s = (await app.inject({ method: 'POST', url: '/v1/sessions', payload: {} })).json();
    await script(app, s.id, s.token);
    const trace = (await app.inject({ method: 'GET', url: `/v1/sessions/${s.id}/trace`, headers: { authorization: `Bearer ${s.token}` } })).body;
    expect(trace.split('\n')[0]).toContain('"format":"iommud-trace","version":1');
    const want = await snapshot(app, s.id, s.token);
    for (let i = 0; i < 2; i++) {
      const r = (await app.inject({ method: 'POST', url: '/v1/sessions', payload: { trace } })).json();
      expect(await snapshot(app, r.id, r.token)).toEqual(want);
    }
    const bad = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { trace: trace.split('\n').slice(0, 2).join('\n') + '\n{"seq":1,"time":"x","by":null,"cmd":{"op":"detach","did":"dom-9","device":"vfe_imgwr"}}' } });
    expect([bad.statusCode, bad.json().error.code]).toEqual([404, 'NOT_FOUND']);
    expect((await app.inject({ method: 'GET', url: '/health' })).json().sessions).toBe(3);
    await app.close();
  });
});

describe('crash test: kill -9 a real daemon under load', () => {
  let child: ChildProcess | null = null;
  afterEach(() => child?.kill('SIGKILL'));

  async function start(dir: string): Promise<{ url: string; proc: ChildProcess }> {
    const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/iommud.ts', '--port', '0', '--data-dir', dir, '--compact-every', '200'], { env: { ...process.env, LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'inherit'] });
    child = proc;
    const url = await new Promise<string>((resolve, reject) => {
      let buf = '';
      proc.stdout!.on('data', (d) => {
        buf += String(d);
        const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(buf);
        if (m) resolve(m[1]!);
      });
      proc.once('exit', () => reject(new Error('daemon exited: ' + buf)));
    });
    return { url, proc };
  }

  it('every mutation that got a 2xx survives; repeated 3 times', async () => {
    const dir = tmp();
    let { url, proc } = await start(dir);
    const s = await (await fetch(`${url}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ profile: 'tiny' }) })).json();
    const h = { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' };
    const d = await (await fetch(`${url}/v1/sessions/${s.id}/domains`, { method: 'POST', headers: h, body: '{}' })).json();
    const acked: number[] = [];
    let page = 0;
    for (let round = 0; round < 3; round++) {
      let stop = false;
      const worker = async () => {
        while (!stop) {
          const p = ++page;
          try {
            const r = await fetch(`${url}/v1/sessions/${s.id}/domains/${d.id}/map`, { method: 'POST', headers: h, body: JSON.stringify({ iova: p * 4096, paddr: 0x80000000, size: 4096, prot: ['read'] }) });
            if (r.status === 200) acked.push(p);
          } catch {
            return; // the daemon died under us
          }
        }
      };
      const workers = Array.from({ length: 8 }, worker);
      // Kill once this round has 20 acknowledgements, then a random moment later: the count, not a time window,
      // decides how much is at stake, so a loaded machine cannot make the round too short to mean anything.
      const target = acked.length + 20;
      while (acked.length < target) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, Math.random() * 100));
      proc.kill('SIGKILL');
      stop = true;
      await Promise.all(workers);
      await new Promise((r) => (proc.exitCode !== null || proc.signalCode !== null ? r(null) : proc.once('exit', r)));
      ({ url, proc } = await start(dir));
      const maps = await (await fetch(`${url}/v1/sessions/${s.id}/domains/${d.id}/mappings?limit=100000`, { headers: h })).json();
      const present = new Set<number>();
      for (const m of maps) for (let a = Number(m.iova); a < Number(m.iova) + m.size; a += 4096) present.add(a / 4096);
      for (const p of acked) expect(present.has(p), `acknowledged page ${p}`).toBe(true);
      // Nothing present that was never asked for.
      for (const p of present) expect(p).toBeLessThanOrEqual(page);
    }
    expect(acked.length).toBeGreaterThan(50);
    proc.kill('SIGKILL');
  }, 60_000);

  it('the revision after a restart is never below one a reply named, translations that were not journaled included', async () => {
    const dir = tmp();
    let { url, proc } = await start(dir);
    const s = await (await fetch(`${url}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ profile: 'tiny' }) })).json();
    const h = { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' };
    const call = async (method: string, path: string, body?: unknown) => (await fetch(`${url}/v1/sessions/${s.id}${path}`, { method, headers: h, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })).json();
    await call('POST', '/domains', {});
    await call('POST', '/domains/dom-1/attach', { device: 'dev0' });
    await call('POST', '/domains/dom-1/map', { iova: 0, paddr: '0x80000000', size: 4096, prot: ['read'] });
    let answered = 0;
    for (let round = 0; round < 2; round++) {
      // TLB hits change nothing a journal keeps, yet each rises revision (API.md); the reply says so.
      for (let i = 0; i < 20; i++) expect((await call('POST', '/devices/dev0/access', { iova: '0x10', access: 'read' })).outcome).toBe('ok');
      answered = (await call('GET', '/')).revision;
      expect(answered).toBeGreaterThanOrEqual(23 + round * 20);
      proc.kill('SIGKILL');
      await new Promise((r) => (proc.exitCode !== null || proc.signalCode !== null ? r(null) : proc.once('exit', r)));
      ({ url, proc } = await start(dir));
      const restored = (await call('GET', '/')).revision;
      expect(restored).toBeGreaterThanOrEqual(answered);
      // And it still rises by one per change from there.
      await call('POST', '/domains', {});
      expect((await call('GET', '/')).revision).toBe(restored + 1);
    }
    proc.kill('SIGKILL');
  }, 60_000);
});

describe('graceful shutdown', () => {
  it('SIGTERM: subscribers get close code 1012, journals are flushed, the process exits 0', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'iommud-'));
    dirs.push(dir);
    const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/iommud.ts', '--port', '0', '--data-dir', dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    const url = await new Promise<string>((resolve) => {
      let buf = '';
      proc.stdout!.on('data', (d) => {
        buf += String(d);
        const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(buf);
        if (m) resolve(m[1]!);
      });
    });
    const s = await (await fetch(`${url}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).json();
    const { default: WebSocket } = await import('ws');
    const ws = new WebSocket(`${url.replace('http', 'ws')}/v1/sessions/${s.id}/events?token=${s.token}`);
    await new Promise((r) => ws.once('open', r));
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    proc.kill('SIGTERM');
    expect(await closed).toBe(1012);
    expect(await exited).toBe(0);
    expect(readdirSync(dir)).toHaveLength(1);
  }, 20_000);
});

describe('snapshots compact the journal', () => {
  it('after compaction, restore = snapshot + journal tail; the trace still replays to the same state', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'iommud-'));
    dirs.push(dir);
    const a = await build({ dataDir: dir, compactEvery: 5 });
    const s = (await a.inject({ method: 'POST', url: '/v1/sessions', payload: {} })).json();
    await script(a, s.id, s.token); // 12 commands: at least one compaction
    await new Promise((r) => setImmediate(r));
    const session = a.registry.get(s.id)!;
    expect(session.compactions).toBeGreaterThanOrEqual(1);
    expect(readdirSync(dir).sort()).toEqual([`${s.id}.journal`, `${s.id}.snap`]);
    // More commands after the snapshot land in the journal tail.
    await a.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains`, headers: { authorization: `Bearer ${s.token}` }, payload: { label: 'tail' } });
    const before = await snapshot(a, s.id, s.token);
    const journalLines = readFileSync(join(dir, `${s.id}.journal`), 'utf8').trim().split('\n').length;
    expect(journalLines).toBeLessThan(1 + 13); // header + the tail, not the whole history
    const trace = (await a.inject({ method: 'GET', url: `/v1/sessions/${s.id}/trace`, headers: { authorization: `Bearer ${s.token}` } })).body;
    await a.close();

    const b = await build({ dataDir: dir, compactEvery: 5 });
    expect(await snapshot(b, s.id, s.token)).toEqual(before);
    const copy = (await b.inject({ method: 'POST', url: '/v1/sessions', payload: { trace } })).json();
    expect({ ...(await snapshot(b, copy.id, copy.token)), lastSeq: 0 }).toEqual({ ...before, lastSeq: 0 });
    await b.close();
  });

  it('a crash between the snapshot and the journal reset: the old journal is not applied twice', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'iommud-'));
    dirs.push(dir);
    const a = await build({ dataDir: dir, compactEvery: 0 });
    const s = (await a.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'tiny' } })).json();
    const h = { authorization: `Bearer ${s.token}` };
    await a.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains`, headers: h, payload: {} });
    await a.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains/dom-1/map`, headers: h, payload: { iova: 0, paddr: '0x80000000', size: 4096, prot: ['read'] } });
    const path = join(dir, `${s.id}.journal`);
    const oldJournal = readFileSync(path);
    a.registry.get(s.id)!.compact();
    const before = await snapshot(a, s.id, s.token);
    await a.close();
    writeFileSync(path, oldJournal); // as if the crash came before the journal was reset
    const b = await build({ dataDir: dir });
    expect(await snapshot(b, s.id, s.token)).toEqual(before);
    expect((await snapshot(b, s.id, s.token)).domains).toHaveLength(1);
    await b.close();
  });
});

describe('restore is per session', () => {
  it('a journal that cannot be replayed is skipped and logged; the other sessions come back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'iommud-'));
    dirs.push(dir);
    const a = await build({ dataDir: dir });
    const good = (await a.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'tiny' } })).json();
    const bad = (await a.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'tiny' } })).json();
    await a.close();
    // A well-formed record of a command that cannot apply (no such domain).
    appendFileSync(join(dir, `${bad.id}.journal`), encodeRecord({ seq: 9, time: 'x', by: null, cmd: { op: 'detach', did: 'dom-7', device: 'dev0' } }));
    const b = await build({ dataDir: dir });
    expect(b.registry.get(good.id)).toBeDefined();
    expect(b.registry.get(bad.id)).toBeUndefined();
    expect(readdirSync(dir)).toContain(`${bad.id}.journal`);
    await b.close();
  });
});
