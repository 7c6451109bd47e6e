/**
 * What a trace holds and what it costs (issue 11, item 12, "as a new user" and the known defects): translations
 * that change only TLB state get no record; everything else does, costed by its real size and bounded by
 * --trace-memory; past it the trace restarts from a snapshot, and a state too large for it is 507 NO_SPACE. A
 * restore or replay starts with empty TLBs; an event seq is never given twice; snapshot records of a trace pass
 * a schema.
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { OP_TRANSLATE_READ } from '../../src/api/stream.js';
import { TINY } from '../../src/hw/profile.js';
import { build } from '../../src/server/app.js';
import type { Command } from '../../src/session/commands.js';
import { encodeRecord } from '../../src/session/journal.js';
import { Session } from '../../src/session/session.js';

type App = Awaited<ReturnType<typeof build>>;
const apps: App[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const a of apps.splice(0)) await a.close().catch(() => {});
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
async function open(opts: Parameters<typeof build>[0] = {}): Promise<App> {
  const a = await build(opts);
  apps.push(a);
  return a;
}
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'iommud-trace-'));
  dirs.push(d);
  return d;
};
async function newSession(a: App, body: object = { profile: 'tiny' }) {
  const r = await a.inject({ method: 'POST', url: '/v1/sessions', payload: body });
  const s = r.json();
  const call = (method: string, url: string, payload?: object) =>
    a.inject({ method: method as 'POST', url: `/v1/sessions/${s.id}${url}`, headers: { authorization: `Bearer ${s.token}` }, ...(payload ? { payload } : {}) });
  return { id: s.id as string, token: s.token as string, call, status: r.statusCode };
}

const u32 = (xs: number[]) => Buffer.from(Uint32Array.from(xs).buffer).toString('base64');
const translate = (iovas: number[]): Command => ({ op: 'stream', device: 'dev0', sop: OP_TRANSLATE_READ, priv: false, mid: 0xff, iovas: u32(iovas) });

/** A tiny session with dom-1 attached to dev0 and 64 KiB mapped at iova 0. */
function mapped(): Session {
  const s = new Session({ id: 't', name: 't', profile: TINY });
  s.run(null, { op: 'domain-alloc' });
  s.run(null, { op: 'attach', did: 'dom-1', device: 'dev0' });
  s.run(null, { op: 'map', did: 'dom-1', iova: 0, paddr: 0x80000000, size: 0x10000, prot: ['read', 'write'] });
  return s;
}

/** What a replay must reproduce: the snapshot (TLB contents are in none), times aside. */
const state = (s: Session) => JSON.stringify({ ...s.snapshot(), tokens: [] }, (k, v) => (k === 'time' || k === 'createdAt' ? undefined : v));

async function replayed(s: Session): Promise<Session> {
  const b = new Session({ id: 't', name: 't', profile: TINY, eventRetain: s.bus.retain });
  b.replay((await s.traceLines()).slice(1).map((l) => JSON.parse(l) as unknown), 'trace');
  return b;
}

describe('the in-memory trace is costed by what it holds (item 12)', () => {
  it('map and unmap records come back as sent: keys in their order, the actor, one JSON.stringify line each', async () => {
    const s = mapped();
    const owner = { role: 'owner' as const, label: 'ci é€' };
    const sent: Array<{ by: unknown; cmd: Command }> = [];
    const run = (by: { role: 'owner'; label: string | null } | null, cmd: Command) => {
      s.run(by, cmd);
      sent.push({ by, cmd });
    };
    for (let i = 1; i <= 40; i++) {
      const by = i % 3 === 0 ? null : i % 3 === 1 ? owner : { role: 'owner' as const, label: null };
      // Keys in the order a route makes them, and in others (a hand-written trace's): each kept as it came.
      const map: Command = i % 4 === 0 ? { op: 'map', did: 'dom-1', paddr: 0x80000000, iova: 0x100000 * i, prot: ['write', 'read'], size: 0x1000 } : { op: 'map', did: 'dom-1', iova: 0x100000 * i, paddr: 0x80000000, size: 0x1000 * (i % 5 + 1), prot: i % 2 ? ['read'] : ['read', 'write', 'noexec'] };
      run(by, map);
      // A translation between them: the next record carries the revision it reached (`unrecorded`).
      if (i % 5 === 0) s.run(null, translate([0]));
      run(by, { op: 'unmap', did: 'dom-1', iova: 0x100000 * i, size: 0x1000 });
    }
    const lines = (await s.traceLines()).slice(4);
    expect(lines).toHaveLength(sent.length);
    lines.forEach((l, i) => {
      const r = JSON.parse(l) as { by: unknown; cmd: object; unrecorded?: unknown };
      expect(JSON.stringify(r)).toBe(l);
      expect([r.by, Object.keys(r.cmd)]).toEqual([sent[i]!.by, Object.keys(sent[i]!.cmd)]);
      expect(r.cmd).toEqual(sent[i]!.cmd);
      expect(r.unrecorded !== undefined).toBe(i % 10 === 9);
    });
    expect(s.traceBytes).toBe((await s.traceLines()).slice(1).reduce((n, l) => n + Buffer.byteLength(l) + 1, 0));
    expect(state(await replayed(s))).toBe(state(s));
    s.close();
  });

  it('a batch of 4,096 maps costs its JSON line, not ~200 bytes', async () => {
    const s = new Session({ id: 't', name: 't', profile: TINY });
    s.run(null, { op: 'domain-alloc' });
    const ops = Array.from({ length: 4096 }, (_, i) => ({ op: 'map' as const, iova: i * 0x1000, paddr: 0x80000000 + i * 0x1000, size: 0x1000, prot: ['read' as const] }));
    s.run(null, { op: 'batch', did: 'dom-1', ops });
    const lines = (await s.traceLines()).slice(1);
    expect(lines).toHaveLength(2);
    expect(s.traceBytes).toBe(lines.reduce((n, l) => n + l.length + 1, 0));
    expect(s.traceBytes).toBeGreaterThan(4096 * 60);
    s.close();
  });

  it('past the budget the trace restarts from a snapshot of the state, within the budget, and replays exactly', async () => {
    // Few retained events: a snapshot holds them all, and here it should be small beside the budget.
    const s = new Session({ id: 't', name: 't', profile: TINY, traceMemory: 512 * 1024, eventRetain: 100 });
    s.run(null, { op: 'domain-alloc' });
    for (let i = 0; i < 3000; i++) {
      s.run(null, { op: 'map', did: 'dom-1', iova: 0x100000 + i * 0x1000, paddr: 0x80100000 + i * 0x1000, size: 0x1000, prot: ['read'] });
      if (i % 3 === 0) s.run(null, { op: 'unmap', did: 'dom-1', iova: 0x100000 + i * 0x1000, size: 0x1000 });
    }
    expect(s.traceBytes).toBeLessThanOrEqual(512 * 1024);
    const lines = await s.traceLines();
    expect(Object.keys(JSON.parse(lines[1]!))).toEqual(['snapshot']);
    const b = await replayed(s);
    expect(state(b)).toBe(state(s));
    expect(b.revision).toBe(s.revision);
    b.close();
    s.close();
  });

  it('a state larger than --trace-memory: GET .../trace is 507 NO_SPACE naming the budget and the remedy (not 429)', async () => {
    const a = await open({ traceMemory: 256 * 1024 });
    const s = await newSession(a);
    for (let i = 0; i < 4; i++) {
      const put = await a.inject({ method: 'PUT', url: `/v1/sessions/${s.id}/memory?paddr=${0x80000000 + i * 0x10000}`, headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/octet-stream' }, payload: Buffer.alloc(0x10000, 1 + i) });
      expect(put.statusCode).toBe(204);
    }
    const r = await s.call('GET', '/trace');
    expect([r.statusCode, r.json().error.code, r.json().error.details]).toEqual([507, 'NO_SPACE', { reason: 'trace-memory', limit: 256 * 1024 }]);
    expect(r.json().error.message).toContain('--trace-memory');
    expect(r.json().error.message).toContain('--data-dir');
  });
});

describe('what a trace holds (as a new user): not translations that change only TLB state', () => {
  it('10,000 stream batches that hit or fill the TLB add no record; revision counts them and replays', async () => {
    const s = mapped();
    const before = await s.traceLines();
    const bytes = s.traceBytes;
    const iovas = Array.from({ length: 16 }, (_, i) => i * 0x1000);
    for (let i = 0; i < 10_000; i++) s.run(null, translate(iovas));
    expect(s.traceBytes).toBe(bytes);
    expect(s.revision).toBe(3 + 10_000);
    const after = await s.traceLines();
    expect(after.slice(0, before.length)).toEqual(before);
    expect(JSON.parse(after.at(-1)!)).toEqual({ unrecorded: { revision: 10_003 } });
    const b = await replayed(s);
    expect(b.revision).toBe(10_003);
    expect(state(b)).toBe(state(s));
    b.close();
    s.close();
  });

  it('HTTP accesses that only hit: none recorded; the next mutation carries the revision they reached', async () => {
    const s = mapped();
    const n = (await s.traceLines()).length;
    for (let i = 0; i < 5; i++) s.run(null, { op: 'access', device: 'dev0', iova: 0x10, access: 'read' });
    s.run(null, { op: 'access-batch', device: 'dev0', access: 'read', iovas: [0, 0x1000, 0x2000] });
    s.run(null, { op: 'map', did: 'dom-1', iova: 0x100000, paddr: 0x80000000, size: 0x1000, prot: ['read'] });
    const lines = await s.traceLines();
    expect(lines).toHaveLength(n + 1);
    expect(JSON.parse(lines.at(-1)!).unrecorded).toEqual({ revision: 9 });
    const b = await replayed(s);
    expect(b.revision).toBe(10);
    b.close();
    s.close();
  });

  it('a fault (with or without its interrupt), a write through the SMMU and a stall are recorded and replay', async () => {
    const s = mapped();
    const n = (await s.traceLines()).length;
    s.run(null, { op: 'context-config', smmu: 'smmu0', ctx: '0', faultInterrupt: false });
    s.run(null, translate([0, 0x20000])); // the second item faults: FSR and FAR, no event
    s.run(null, { op: 'access', device: 'dev0', iova: 0x10, access: 'write', data: Buffer.from('rig').toString('base64') });
    s.run(null, { op: 'context-config', smmu: 'smmu0', ctx: '0', faultMode: 'stall', faultInterrupt: true });
    s.run(null, { op: 'clear-fault', smmu: 'smmu0', ctx: '0' });
    s.run(null, translate([0x30000])); // stalls
    s.run(null, translate([0x1000])); // a hit: nothing to record
    const lines = await s.traceLines();
    expect(lines.length).toBe(n + 6 + 1); // six records and the revision at the end
    const b = await replayed(s);
    expect(state(b)).toBe(state(s));
    expect(b.soc.smmus[0]!.banks[0]!.stalls).toHaveLength(1);
    expect(Buffer.from(b.soc.mem.readBytes(0x80000010, 3)).toString()).toBe('rig');
    expect(b.revision).toBe(s.revision);
    b.close();
    s.close();
  });

  it('with --data-dir, hits are not journaled; a graceful restart keeps the revision', async () => {
    const dir = tmp();
    const a = await open({ dataDir: dir });
    const s = await newSession(a);
    await s.call('POST', '/domains', {});
    await s.call('POST', '/domains/dom-1/attach', { device: 'dev0' });
    await s.call('POST', '/domains/dom-1/map', { iova: 0, paddr: '0x80000000', size: 4096, prot: ['read'] });
    const journal = join(dir, `${s.id}.journal`);
    const size = statSync(journal).size;
    for (let i = 0; i < 50; i++) expect((await s.call('POST', '/devices/dev0/access', { iova: '0x10', access: 'read' })).json().outcome).toBe('ok');
    // One bound on the revisions replies may name (written by the first hit, 1024 ahead), not a record per hit.
    expect(statSync(journal).size).toBe(size + Buffer.byteLength(encodeRecord({ answered: 4 + 1024 })));
    expect((await s.call('GET', '/')).json().revision).toBe(53);
    await a.close();
    const b = await open({ dataDir: dir });
    const h = { authorization: `Bearer ${s.token}` };
    expect((await b.inject({ method: 'GET', url: `/v1/sessions/${s.id}`, headers: h })).json().revision).toBe(53);
  });

  it('with --data-dir, a graceful restart after hits and then a recorded change keeps the exact revision', async () => {
    const dir = tmp();
    const a = await open({ dataDir: dir });
    const s = await newSession(a);
    await s.call('POST', '/domains', {});
    await s.call('POST', '/domains/dom-1/attach', { device: 'dev0' });
    await s.call('POST', '/domains/dom-1/map', { iova: 0, paddr: '0x80000000', size: 4096, prot: ['read'] });
    for (let i = 0; i < 5; i++) await s.call('POST', '/devices/dev0/access', { iova: '0x10', access: 'read' });
    await s.call('POST', '/domains', {});
    expect((await s.call('GET', '/')).json().revision).toBe(9);
    await a.close();
    const b = await open({ dataDir: dir });
    expect((await b.inject({ method: 'GET', url: `/v1/sessions/${s.id}`, headers: { authorization: `Bearer ${s.token}` } })).json().revision).toBe(9);
  });
});

describe('known defects (item 4 of the brief)', () => {
  it('the TLB is empty after a restore, as the README says (it was refilled by the journal replay)', async () => {
    const dir = tmp();
    const a = await open({ dataDir: dir });
    const s = await newSession(a);
    await s.call('POST', '/domains', {});
    await s.call('POST', '/domains/dom-1/attach', { device: 'dev0' });
    await s.call('POST', '/domains/dom-1/map', { iova: 0, paddr: '0x80000000', size: 0x4000, prot: ['read', 'write'] });
    // Writes are recorded (RAM changes), and each fills a TLB entry on replay.
    for (let p = 0; p < 4; p++) expect((await s.call('POST', '/devices/dev0/access', { iova: `0x${(p * 0x1000).toString(16)}`, access: 'write', data: 'AAAA' })).json().outcome).toBe('ok');
    expect((await s.call('GET', '/smmus')).json()[0].tlb.entries).toBe(4);
    await a.close();
    const b = await open({ dataDir: dir });
    const r = await b.inject({ method: 'GET', url: `/v1/sessions/${s.id}/smmus`, headers: { authorization: `Bearer ${s.token}` } });
    expect(r.json()[0].tlb).toMatchObject({ entries: 0, hits: 0, misses: 0 });
  });

  it('an event seq is never given twice: a journal failure undoes the change, not its numbers (also after a restart)', async () => {
    const dir = tmp();
    const a = await open({ dataDir: dir });
    const s = await newSession(a);
    await s.call('POST', '/domains', {});
    const session = a.registry.get(s.id)!;
    const seen: number[] = [];
    session.bus.subscribe((ev) => seen.push(ev.seq));
    const j = session.journal! as unknown as { fd: number };
    const real = j.fd;
    j.fd = openSync('/dev/full', 'w');
    const r = await s.call('POST', '/domains', {});
    expect([r.statusCode, r.json().error.code]).toEqual([503, 'UNAVAILABLE']);
    closeSync(j.fd);
    j.fd = real;
    expect((await s.call('GET', '/domains')).json()).toHaveLength(1);
    const withdrawn = seen.at(-1)!;
    expect((await s.call('POST', '/domains', {})).statusCode).toBe(201);
    expect(seen.at(-1)).toBe(withdrawn + 1);
    expect(new Set(seen).size).toBe(seen.length);
    // A since-replay skips the withdrawn number rather than showing another event under it.
    expect(session.bus.replay(withdrawn - 1).events.map((e) => e.seq)).toEqual([withdrawn + 1]);
    await a.close();
    const b = await open({ dataDir: dir });
    const t = b.registry.get(s.id)!;
    expect(t.bus.lastSeq).toBe(withdrawn + 1);
    t.bus.subscribe((ev) => seen.push(ev.seq));
    expect((await b.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains`, headers: { authorization: `Bearer ${s.token}` }, payload: {} })).statusCode).toBe(201);
    expect(seen.at(-1)).toBe(withdrawn + 2);
  });

  describe('a snapshot record of a trace passes the snapshot schema: a bad one is 400 and makes nothing', () => {
    async function snapshotTrace(a: App): Promise<any[]> {
      const s = await newSession(a, { profile: 'tiny', name: 'snap' });
      await s.call('POST', '/domains', {});
      await s.call('POST', '/domains/dom-1/map', { iova: 0, paddr: '0x80000000', size: 4096, prot: ['read'] });
      const session = a.registry.get(s.id)!;
      const header = JSON.parse((await session.traceLines())[0]!);
      return [header, { snapshot: JSON.parse(JSON.stringify({ ...session.snapshot(), tokens: [] })) }];
    }
    const cases: Array<[string, (snap: any) => void]> = [
      ['revision a string', (x) => (x.revision = 'abc')],
      ['a register value that is a string', (x) => (x.soc.smmus[0].banks[0].regs.SCTLR = 'on')],
      ['a RAM chunk of 3 bytes', (x) => (x.soc.mem['32768'] = 'AAAA')],
      ['a RAM chunk outside RAM', (x) => (x.soc.mem['5'] = Buffer.alloc(65536).toString('base64'))],
      ['one SMMU too many', (x) => x.soc.smmus.push(x.soc.smmus[0])],
      ['a domain without its table root', (x) => delete x.iommu.domains[0].l1],
      ['an unknown field', (x) => (x.extra = 1)],
      ['pools missing', (x) => delete x.pools],
      ['a stalled transaction with a 2^40 iova', (x) => (x.soc.smmus[0].stalled = [['stall-1', { iova: 2 ** 40, access: 0, priv: false, mid: 0, size: 0 }]])],
    ];
    for (const [name, mutate] of cases) {
      it(name, async () => {
        const a = await open();
        const [header, snap] = await snapshotTrace(a);
        const n = (await a.inject({ method: 'GET', url: '/health' })).json().sessions;
        mutate(snap.snapshot);
        const r = await a.inject({ method: 'POST', url: '/v1/sessions', payload: { trace: [header, snap] } });
        expect([r.statusCode, r.json().error.code, r.json().error.details.record]).toEqual([400, 'BAD_REQUEST', 1]);
        expect((await a.inject({ method: 'GET', url: '/health' })).json().sessions).toBe(n);
      });
    }
    it('an exported snapshot replays (control)', async () => {
      const a = await open();
      const [header, snap] = await snapshotTrace(a);
      const r = await a.inject({ method: 'POST', url: '/v1/sessions', payload: { trace: [header, snap] } });
      expect(r.statusCode).toBe(201);
    });
  });
});

describe('a budget of emulated RAM per session and per daemon (item 22)', () => {
  const put = (a: App, s: { id: string; token: string }, paddr: number, bytes: number) =>
    a.inject({ method: 'PUT', url: `/v1/sessions/${s.id}/memory?paddr=0x${paddr.toString(16)}`, headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/octet-stream' }, payload: Buffer.alloc(bytes, 0x5a) });

  it('per session: a write past it is 429 LIMIT naming the budget and changes nothing; rewriting held RAM is fine', async () => {
    const a = await open({ maxRamPerSession: 4 * 65536 });
    const s = await newSession(a);
    expect((await put(a, s, 0x80000000, 3 * 65536)).statusCode).toBe(204);
    const rev = (await s.call('GET', '/')).json().revision;
    const r = await put(a, s, 0x80030000 - 16, 65536 + 32); // two new chunks: one too many
    expect([r.statusCode, r.json().error.code, r.json().error.details]).toEqual([429, 'LIMIT', { scope: 'session', limit: 4 * 65536, held: 3 * 65536, bytes: 2 * 65536 }]);
    expect((await s.call('GET', '/')).json().revision).toBe(rev);
    const ram = await s.call('GET', '/memory?paddr=0x8002fff0&size=32');
    expect(ram.rawPayload.subarray(16).every((b) => b === 0)).toBe(true);
    expect((await put(a, s, 0x80000000, 3 * 65536)).statusCode).toBe(204);
    expect((await put(a, s, 0x80030000, 65536)).statusCode).toBe(204);
  });

  it('per daemon: the sessions together; deleting a session gives its RAM back', async () => {
    const a = await open({ maxRam: 4 * 65536 });
    const s1 = await newSession(a);
    const s2 = await newSession(a);
    expect((await put(a, s1, 0x80000000, 3 * 65536)).statusCode).toBe(204);
    const r = await put(a, s2, 0x80000000, 2 * 65536);
    expect([r.statusCode, r.json().error.code, r.json().error.details]).toEqual([429, 'LIMIT', { scope: 'daemon', limit: 4 * 65536, held: 3 * 65536, bytes: 2 * 65536 }]);
    expect((await s1.call('DELETE', '')).statusCode).toBe(204);
    expect((await put(a, s2, 0x80000000, 2 * 65536)).statusCode).toBe(204);
  });

  it('a device write and a trace replay are refused the same way (the check is in the command)', async () => {
    const a = await open({ maxRamPerSession: 2 * 65536 });
    const s = await newSession(a);
    await s.call('POST', '/domains', {});
    await s.call('POST', '/domains/dom-1/attach', { device: 'dev0' });
    // The page table takes a chunk of the pool; the mapping spans four more.
    await s.call('POST', '/domains/dom-1/map', { iova: 0, paddr: '0x80000000', size: 0x40000, prot: ['read', 'write'] });
    const w = await s.call('POST', '/devices/dev0/access', { iova: '0x0', access: 'write', data: Buffer.alloc(0x20000).toString('base64') });
    expect([w.statusCode, w.json().error.code]).toEqual([429, 'LIMIT']);
    expect((await s.call('GET', '/memory?paddr=0x80000000&size=4')).rawPayload).toEqual(Buffer.alloc(4));
    const header = JSON.parse((await s.call('GET', '/trace')).body.split('\n')[0]);
    const n = (await a.inject({ method: 'GET', url: '/health' })).json().sessions;
    const trace = [header, { seq: 1, time: header.session.createdAt, by: null, cmd: { op: 'memory-write', paddr: 0x80000000, data: Buffer.alloc(3 * 65536, 1).toString('base64') } }];
    const r = await a.inject({ method: 'POST', url: '/v1/sessions', payload: { trace } });
    expect([r.statusCode, r.json().error.code, r.json().error.details.scope, r.json().error.details.record]).toEqual([429, 'LIMIT', 'session', 1]);
    expect((await a.inject({ method: 'GET', url: '/health' })).json().sessions).toBe(n);
  });

  it('with --data-dir a refused replay leaves no file behind', async () => {
    const dir = tmp();
    const a = await open({ dataDir: dir, maxRamPerSession: 65536 });
    const s = await newSession(a);
    const header = JSON.parse((await s.call('GET', '/trace')).body.split('\n')[0]);
    const files = readdirSync(dir).sort();
    const trace = [header, { seq: 1, time: header.session.createdAt, by: null, cmd: { op: 'memory-write', paddr: 0x80000000, data: Buffer.alloc(2 * 65536, 1).toString('base64') } }];
    const r = await a.inject({ method: 'POST', url: '/v1/sessions', payload: { trace } });
    expect(r.statusCode).toBe(429);
    expect(readdirSync(dir).sort()).toEqual(files);
  });
});
