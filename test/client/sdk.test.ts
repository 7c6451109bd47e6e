import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../support/wait.js';
import { decodeRequest, encodeRequest, OP_TRANSLATE_READ, OP_WRITE } from '../../src/api/stream.js';
import { IommudClient, IommudConnectionError, IommudError, type IommudEvent, type SessionClient } from '../../src/client/index.js';
import { build } from '../../src/server/app.js';


describe('SDK against a live daemon', () => {
  let app: FastifyInstance;
  let client: IommudClient;
  let s: SessionClient;
  beforeAll(async () => {
    app = await build();
    client = new IommudClient({ url: await app.listen({ port: 0, host: '127.0.0.1' }) });
    s = await client.createSession({ profile: 'tiny', name: 'sdk' });
  });
  afterAll(() => app.close());

  it('every route, with typed results', async () => {
    expect((await client.health()).status).toBe('ok');
    expect((await client.version()).api).toBe('v1');
    expect((await client.profiles()).map((p) => p.name)).toEqual(['msm8x60', 'tiny', 'omap4', 'tegra20']);
    expect(await client.metrics()).toContain('iommud_sessions');
    expect((await s.get()).name).toBe('sdk');
    const op = await s.mintToken('operator', 'rig');
    expect(op).toMatchObject({ role: 'operator', label: 'rig' });
    const d = await s.allocDomain({ flushPolicy: 'deferred' });
    expect(d.ttbr0).toBe('0x83e00000');
    expect((await s.attach(d.id, 'dev0')).attached).toEqual(['dev0']);
    expect((await s.map(d.id, { iova: '0x1000', paddr: '0x80000000', size: 0x2000, prot: ['read', 'write'] })).pages['4K']).toBe(2);
    expect((await s.batch(d.id, [{ op: 'map', iova: '0x100000', paddr: '0x80100000', size: '0x100000', prot: ['read'] }])).results).toHaveLength(1);
    expect(await s.mappings(d.id, { limit: 10 })).toHaveLength(2);
    expect((await s.iovaToPhys(d.id, '0x1234')).paddr).toBe('0x80000234');
    expect((await s.pagetable(d.id)).l1).toHaveLength(2);
    expect(await s.access('dev0', { iova: '0x1000', access: 'read' })).toEqual({ outcome: 'ok', paddr: '0x80000000', tlb: 'miss' });
    expect((await s.accessBatch('dev0', { access: 'read', iovas: ['0x1000', '0x9000'] })).results.map((r) => r.outcome)).toEqual(['ok', 'fault']);
    expect((await s.unmap(d.id, { iova: '0x1000', size: 0x1000 })).unmapped).toBe(0x1000);
    expect((await s.domain(d.id)).pendingSync).toEqual([{ iova: '0x1000', size: 4096 }]);
    expect((await s.sync(d.id)).invalidated).toBe(1);
    expect((await s.flush(d.id)).contexts).toBe(1);
    expect((await s.smmus())[0]!.name).toBe('smmu0');
    expect((await s.context('smmu0', 'dev0')).registers.FSR).toBe('0x2');
    expect((await s.clearFault('smmu0', 0)).registers.FSR).toBe('0x0');
    expect((await s.configureContext('smmu0', 'dev1', { faultMode: 'stall' })).faultMode).toBe('stall');
    expect((await s.injectFault('smmu0', 'dev0', 'external')).name).toBe('dev0');
    expect((await s.access('dev0', { iova: '0x2000', access: 'read' })).outcome).toBe('fault');
    expect((await s.mmioRead('smmu0', '0x10')).value).toBe('0x83e00002');
    expect((await s.mmioWrite('smmu0', '0x800', 0)).register).toBe('CTX_TLBIALL');
    expect((await s.mmioBatch('smmu0', [{ op: 'read', offset: '0xffff8' }])).results[0]!.register).toBe('IDR');
    expect((await s.masterAccess('smmu0', 0, { iova: '0x2000', access: 'read' })).outcome).toBe('ok');
    const b = await s.allocBuffer({ size: 4096 });
    expect(b.pool).toBe('ram');
    expect(await s.buffers()).toHaveLength(1);
    expect((await s.pools())[0]!.used).toBe(4096);
    await s.writeMemory(b.paddr, new Uint8Array([1, 2, 3]));
    expect([...(await s.readMemory(b.paddr, 3))]).toEqual([1, 2, 3]);
    await s.freeBuffer(b.paddr);
    const m = await s.dmaMap('dev1', { paddr: '0x80400000', size: 4096, dir: 'to-device' });
    expect(m.dmaAddr).toBe('0xfffff000');
    await s.dmaSync('dev1', { dmaAddr: m.dmaAddr, size: 16, for: 'cpu' });
    expect((await s.dmaState('dev1')).mappings).toHaveLength(1);
    await s.dmaUnmap('dev1', { dmaAddr: m.dmaAddr, size: 4096, dir: 'to-device' });
    expect((await s.dmaMapSg('dev1', { segments: [{ paddr: '0x80500000', size: 4096 }], dir: 'to-device' })).segments).toHaveLength(1);
    expect((await s.dmaConfigure('dev1', { flushPolicy: 'deferred' })).flushPolicy).toBe('deferred');
    expect((await s.trace()).split('\n')[0]).toContain('iommud-trace');
    expect((await s.detach(d.id, 'dev0')).attached).toEqual([]);
    await s.freeDomain(d.id);
    await expect(s.domain(d.id)).rejects.toMatchObject({ code: 'NOT_FOUND', status: 404 });
  });

  it('typed errors carry the API code; an unreachable daemon is a connection error', async () => {
    const d = await s.allocDomain();
    await s.map(d.id, { iova: 0, paddr: '0x80000000', size: 4096, prot: ['read'] });
    const e = await s.map(d.id, { iova: 0, paddr: '0x80000000', size: 4096, prot: ['read'] }).catch((x) => x);
    expect(e).toBeInstanceOf(IommudError);
    expect([e.code, e.status, e.details]).toEqual(['ALREADY_MAPPED', 409, { iova: '0x0' }]);
    const gone = new IommudClient({ url: 'http://127.0.0.1:1' });
    await expect(gone.health()).rejects.toBeInstanceOf(IommudConnectionError);
  });

  it('events: reconnect with since misses nothing', async () => {
    const got: IommudEvent[] = [];
    const sub = s.subscribe({ types: ['map', 'unmap'], onEvent: (e) => got.push(e), reconnect: { min: 20, max: 100 } });
    await sub.ready();
    const d = await s.allocDomain();
    await s.map(d.id, { iova: 0x1000, paddr: '0x80000000', size: 4096, prot: ['read'] });
    await until(() => got.length === 1);
    sub.dropConnection();
    for (let i = 2; i < 12; i++) await s.map(d.id, { iova: i * 0x1000, paddr: '0x80000000', size: 4096, prot: ['read'] });
    await until(() => got.length === 11);
    const seqs = got.map((e) => e.seq);
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBe(seqs[i - 1]! + 1);
    sub.close();
  });
});

describe('binary translate stream', () => {
  let app: FastifyInstance;
  let s: SessionClient;
  beforeAll(async () => {
    app = await build();
    const client = new IommudClient({ url: await app.listen({ port: 0, host: '127.0.0.1' }) });
    s = await client.createSession({ profile: 'tiny' });
    const d = await s.allocDomain();
    await s.attach(d.id, 'dev0');
    await s.map(d.id, { iova: '0x10000000', paddr: '0x80000000', size: '0x100000', prot: ['read'] });
  });
  afterAll(() => app.close());

  it('request frames have the documented bytes and round-trip', () => {
    const f = encodeRequest({ id: 0x01020304, op: OP_TRANSLATE_READ, priv: true, mid: 5, iovas: Uint32Array.of(0x10000000, 0xdeadb000) });
    expect(Buffer.from(f).toString('hex')).toBe('01' + '01' + '01' + '05' + '04030201' + '02000000' + '00000010' + '00b0adde');
    const w = encodeRequest({ id: 7, op: OP_WRITE, priv: false, mid: 0xff, iovas: Uint32Array.of(0x1000), lengths: Uint32Array.of(2), data: Uint8Array.of(0xaa, 0xbb) });
    expect(Buffer.from(w).toString('hex')).toBe('010500ff' + '07000000' + '01000000' + '00100000' + '02000000' + 'aabb');
    expect(decodeRequest(w, 16)).toMatchObject({ id: 7, op: OP_WRITE, priv: false, mid: 0xff, iovas: Uint32Array.of(0x1000), lengths: Uint32Array.of(2) });
  });

  it('reply bytes: an ok miss, an ok hit, a translation fault, a permission fault', async () => {
    const st = await s.stream('dev0');
    const items = await st.translate('read', [0x10000010, 0x10000020, 0x20000000]);
    expect(items).toEqual([
      { status: 'ok', tlb: 'miss', stale: false, unbacked: false, paddr: 0x80000010 },
      { status: 'ok', tlb: 'hit', stale: false, unbacked: false, paddr: 0x80000020 },
      { status: 'translation', tlb: 'miss', stale: false, unbacked: false, paddr: 0 },
    ]);
    expect((await st.translate('write', [0x10000000]))[0]!.status).toBe('permission');
    // Faults raised on the stream are the same registers (and events) as on the JSON routes.
    expect((await s.context('smmu0', 'dev0')).registers.FAR).toBe('0x20000000');
    st.close();
  });

  it('data through the stream: writes land in RAM, reads bring them back', async () => {
    const d2 = await s.allocDomain();
    await s.attach(d2.id, 'dev1');
    await s.map(d2.id, { iova: '0x4000', paddr: '0x80200000', size: 0x2000, prot: ['read', 'write'] });
    const st = await s.stream('dev1');
    expect((await st.write([{ iova: 0x4ffe, data: Uint8Array.of(1, 2, 3, 4) }]))[0]!.status).toBe('ok');
    expect([...(await s.readMemory('0x80200ffe', 4))]).toEqual([1, 2, 3, 4]);
    const r = await st.read([{ iova: 0x4fff, length: 2 }, { iova: 0x9000, length: 1 }]);
    expect([...r[0]!.data!]).toEqual([2, 3]);
    expect(r[1]!.status).toBe('translation');
    st.close();
  });

  it('MMIO over the stream: a V2P probe written and PAR read back in one pipelined pair; a bad offset refuses its item', async () => {
    const st = await s.stream('dev0');
    const w = await st.mmioWrite([{ offset: 0x810, value: 0x10000000 }, { offset: 0x50, value: 1 }]);
    expect(w.map((x) => x.status)).toEqual(['ok', 'bad-offset']);
    const [par, idr] = await st.mmioRead([0x01c, 0xffff8]);
    expect(par).toMatchObject({ status: 'ok', paddr: 0x80000000 });
    expect(idr!.paddr).toBe((1 << 16) | (7 << 12) | (1 << 9) | 255);
    expect((await s.mmioRead('smmu0', '0x1c')).value).toBe('0x80000000');
    st.close();
  });

  it('pipelining: thousands of batches in flight come back in order, each with its own answers', async () => {
    const st = await s.stream('dev0', { maxInFlight: 4096 });
    const batches = Array.from({ length: 3000 }, (_, i) => [0x10000000 + ((i * 4096) % 0x100000) + (i % 4096), 0x10000000 + 4 * i]);
    const results = await Promise.all(batches.map((b) => st.translate('read', b)));
    results.forEach((items, i) => {
      expect(items.map((x) => x.paddr)).toEqual(batches[i]!.map((v) => 0x80000000 + (v - 0x10000000)));
    });
    st.close();
  });

  it('random bytes on the stream: every frame gets a reply or an error, the daemon stays up', async () => {
    const { default: WebSocket } = await import('ws');
    const ws = new WebSocket(`${s.url.replace('http', 'ws')}/v1/sessions/${s.id}/devices/dev0/stream`, { headers: { authorization: `Bearer ${s.token}` } });
    await new Promise((r) => ws.once('open', r));
    let answers = 0;
    ws.on('message', () => answers++);
    let seed = 12345;
    const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    for (let i = 0; i < 500; i++) {
      const frame = Buffer.alloc(Math.floor(rnd() * 64));
      for (let k = 0; k < frame.length; k++) frame[k] = Math.floor(rnd() * 256);
      // Half of them look like version-1 frames, to get past the first check.
      if (i % 2 && frame.length > 12) frame[0] = 1;
      ws.send(frame);
    }
    await until(() => answers === 500);
    ws.close();
    expect((await s.get()).id).toBe(s.id);
  });

  it('malformed frames are refused with an error message, the stream stays usable; observers may not open it', async () => {
    const st = await s.stream('dev0');
    await expect(st.translate('read', [])).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    expect((await st.translate('read', [0x10000000]))[0]!.status).toBe('ok');
    st.close();
    const obs = await s.mintToken('observer');
    const client = new IommudClient({ url: s.url });
    await expect(client.session(s.id, obs.token).stream('dev0')).rejects.toMatchObject({ code: 'FORBIDDEN', status: 403, message: 'this needs the operator role; the token is observer' });
  });
});
