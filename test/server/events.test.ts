import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../support/wait.js';
import WebSocket from 'ws';
import type { Socket } from 'node:net';
import { encodeRequest, OP_TRANSLATE_READ } from '../../src/api/stream.js';
import { BURST_MAX } from '../../src/events/bus.js';
import { client, type Client } from '../support/server.js';

async function open(url: string): Promise<{ ws: WebSocket; msgs: any[] }> {
  const ws = new WebSocket(url);
  const msgs: any[] = [];
  ws.on('message', (m) => msgs.push(JSON.parse(String(m))));
  await new Promise<void>((res, rej) => {
    ws.once('open', () => res());
    ws.once('error', rej);
    ws.once('unexpected-response', (_req, r) => rej(new Error(`HTTP ${r.statusCode}`)));
  });
  return { ws, msgs };
}


describe('event stream over WebSocket', () => {
  let c: Client;
  let base: string;
  let did: string;
  beforeAll(async () => {
    c = await client('tiny', { wsHighWater: 16 * 1024 });
    const addr = await c.app.listen({ port: 0, host: '127.0.0.1' });
    base = addr.replace('http', 'ws') + `/v1/sessions/${c.sid}/events`;
    did = (await c.call('POST', '/domains', {})).body.id;
    await c.call('POST', `/domains/${did}/attach`, { device: 'dev0' });
  });
  afterAll(() => c.app.close());

  it('two subscribers see the same ordered seq; events name the actor', async () => {
    const a = await open(`${base}?token=${c.token}`);
    const op = (await c.call('POST', '/tokens', { role: 'operator', label: 'alice' })).body.token;
    const b = await open(`${base}?token=${op}&types=map,unmap`);
    await c.call('POST', `/domains/${did}/map`, { iova: 0, paddr: '0x80000000', size: 4096, prot: ['read'] }, op);
    await c.call('POST', `/domains/${did}/unmap`, { iova: 0, size: 4096 });
    await until(() => a.msgs.length >= 2 && b.msgs.length >= 2);
    expect(a.msgs.map((m) => m.type)).toEqual(['map', 'unmap']);
    expect(b.msgs).toEqual(a.msgs);
    expect(a.msgs[1].seq).toBe(a.msgs[0].seq + 1);
    expect(a.msgs[0]).toMatchObject({ type: 'map', domain: did, iova: '0x0', paddr: '0x80000000', size: 4096, by: { role: 'operator', label: 'alice' } });
    a.ws.close();
    b.ws.close();
  });

  it('since replays retained events, then continues live; device filter keeps its domain\'s events', async () => {
    const s0 = (await c.call('GET', '/')).body.lastSeq;
    await c.call('POST', `/domains/${did}/map`, { iova: 0x1000, paddr: '0x80000000', size: 4096, prot: ['read'] });
    const other = (await c.call('POST', '/domains', {})).body.id;
    await c.call('POST', `/domains/${other}/map`, { iova: 0x1000, paddr: '0x80000000', size: 4096, prot: ['read'] });
    const r = await open(`${base}?token=${c.token}&since=${s0}&device=dev0`);
    await until(() => r.msgs.length >= 1);
    await c.call('POST', '/devices/dev0/access', { iova: 0x9000, access: 'read' });
    await until(() => r.msgs.length >= 2);
    expect(r.msgs.map((m) => [m.type, m.domain])).toEqual([['map', did], ['fault', did]]);
    expect(r.msgs[0].seq).toBe(s0 + 1);
    r.ws.close();
  });

  it('an unknown type is refused before the upgrade; no token is 401', async () => {
    await expect(open(`${base}?token=${c.token}&types=bogus`)).rejects.toThrow('HTTP 400');
    await expect(open(`${base}`)).rejects.toThrow('HTTP 401');
  });

  it('a slow consumer gets one gap, then live events; nothing twice, nothing out of order', async () => {
    const slow = await open(`${base}?token=${c.token}&types=fault`);
    // The client stops reading; 40,000 faults fill the kernel buffers and then the server's send buffer.
    (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();
    for (let k = 0; k < 2; k++) {
      const iovas = Array.from({ length: 20_000 }, (_, i) => 0x10000000 + (k * 20_000 + i) * 0x1000);
      await c.call('POST', '/devices/dev0/access-batch', { access: 'read', iovas });
    }
    (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.resume();
    await until(() => slow.msgs.some((m) => m.type === 'gap'), 20_000);
    await new Promise((r) => setTimeout(r, 100));
    await c.call('POST', '/devices/dev0/access', { iova: 0x20000000, access: 'read' });
    await until(() => slow.msgs.at(-1)?.iova === '0x20000000');
    // Each falling-behind episode is announced by one gap covering exactly what was skipped: every seq from the
    // first to the last event is either delivered once or inside exactly one gap, in order.
    let expectSeq = slow.msgs[0].seq ?? slow.msgs[0].from;
    let gaps = 0;
    for (const m of slow.msgs.slice(0, -1)) {
      if (m.type === 'gap') {
        gaps++;
        expect(m.from).toBe(expectSeq);
        expectSeq = m.to + 1;
      } else {
        expect(m.seq).toBe(expectSeq);
        expectSeq = m.seq + 1;
      }
    }
    expect(gaps).toBeGreaterThanOrEqual(1);
    expect(slow.msgs.at(-1).seq).toBeGreaterThanOrEqual(expectSeq);
    slow.ws.close();
  });

  it('batch=1 (capability event-batches): one tick\'s events as one JSON array message, the same events in the same order as without', async () => {
    expect((await c.call('GET', '/v1/version')).body.capabilities).toContain('event-batches');
    const plain = await open(`${base}?token=${c.token}&types=fault`);
    const batched = await open(`${base}?token=${c.token}&types=fault&batch=1`);
    const iovas = Array.from({ length: 50 }, (_, i) => 0x30000000 + i * 0x1000);
    await c.call('POST', '/devices/dev0/access-batch', { access: 'read', iovas });
    await until(() => plain.msgs.length >= 50 && batched.msgs.flat().length >= 50);
    // One access-batch is one tick: its 50 faults are one message.
    expect(batched.msgs).toHaveLength(1);
    expect(Array.isArray(batched.msgs[0])).toBe(true);
    expect(batched.msgs[0]).toEqual(plain.msgs);
    expect(plain.msgs.map((m) => m.iova)).toEqual(iovas.map((a) => `0x${a.toString(16)}`));
    plain.ws.close();
    batched.ws.close();
  });

  it('batch=1: a gap stays a single object between arrays; since replays as arrays too; batch=0 is unbatched; other values are refused', async () => {
    const s0 = (await c.call('GET', '/')).body.lastSeq;
    await c.call('POST', '/devices/dev0/access', { iova: 0x31000000, access: 'read' });
    const r = await open(`${base}?token=${c.token}&since=${s0}&batch=1&types=fault`);
    await until(() => r.msgs.length >= 1);
    expect(r.msgs[0]).toMatchObject([{ seq: s0 + 1, type: 'fault', iova: '0x31000000' }]);
    r.ws.close();
    const u = await open(`${base}?token=${c.token}&since=${s0}&batch=0&types=fault`);
    await until(() => u.msgs.length >= 1);
    expect(u.msgs[0]).toMatchObject({ seq: s0 + 1, type: 'fault' });
    u.ws.close();
    await expect(open(`${base}?token=${c.token}&batch=yes`)).rejects.toThrow('HTTP 400');

    const slow = await open(`${base}?token=${c.token}&types=fault&batch=1`);
    (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();
    for (let k = 0; k < 2; k++) {
      const many = Array.from({ length: 20_000 }, (_, i) => 0x10000000 + (k * 20_000 + i) * 0x1000);
      await c.call('POST', '/devices/dev0/access-batch', { access: 'read', iovas: many });
    }
    (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.resume();
    await until(() => slow.msgs.some((m) => m.type === 'gap'), 20_000);
    await new Promise((res) => setTimeout(res, 100));
    await c.call('POST', '/devices/dev0/access', { iova: 0x20000000, access: 'read' });
    await until(() => Array.isArray(slow.msgs.at(-1)) && slow.msgs.at(-1).at(-1).iova === '0x20000000');
    // Arrays hold events only; every seq is delivered once or inside one gap, in order.
    let expectSeq = Array.isArray(slow.msgs[0]) ? slow.msgs[0][0].seq : slow.msgs[0].from;
    for (const m of slow.msgs) {
      if (Array.isArray(m)) {
        for (const ev of m) {
          expect(ev.type).toBe('fault');
          expect(ev.seq).toBeGreaterThanOrEqual(expectSeq);
          expectSeq = ev.seq + 1;
        }
      } else {
        expect(m.type).toBe('gap');
        expect(m.from).toBe(expectSeq);
        expectSeq = m.to + 1;
      }
    }
    expect(slow.msgs.some((m) => m.type === 'gap')).toBe(true);
    slow.ws.close();
  });

  it('batch=1: each stream batch is a burst of its own, even when one socket read brings several batches', async () => {
    const sub = await open(`${base}?token=${c.token}&types=fault&batch=1`);
    const st = new WebSocket(base.replace(/\/events$/, '/devices/dev0/stream'), { headers: { authorization: `Bearer ${c.token}` } });
    const replies: Buffer[] = [];
    st.on('message', (d) => replies.push(d as Buffer));
    await new Promise((r, j) => st.once('open', r).once('error', j));
    const batch = (id: number, from: number) => encodeRequest({ id, op: OP_TRANSLATE_READ, priv: false, mid: 0xff, iovas: Uint32Array.from({ length: 20 }, (_, i) => from + i * 0x1000) });
    // Both requests in one TCP write: the daemon reads them in one go.
    const sock = (st as unknown as { _socket: Socket })._socket;
    sock.cork();
    st.send(batch(1, 0x32000000));
    st.send(batch(2, 0x33000000));
    sock.uncork();
    await until(() => replies.length === 2 && sub.msgs.flat().length >= 40);
    expect(sub.msgs.map((m) => m.length)).toEqual([20, 20]);
    expect(sub.msgs.map((m) => m[0].iova)).toEqual(['0x32000000', '0x33000000']);
    expect(sub.msgs[1][0].seq).toBe(sub.msgs[0][19].seq + 1);
    st.close();
    sub.ws.close();
  });

  it('batch=1: a burst ends by itself after BURST_MAX events, so a batch of 600 faults leaves as 256 + 256 + 88, in order', async () => {
    const plain = await open(`${base}?token=${c.token}&types=fault`);
    const sub = await open(`${base}?token=${c.token}&types=fault&batch=1`);
    const iovas = Array.from({ length: 600 }, (_, i) => 0x34000000 + i * 0x1000);
    await c.call('POST', '/devices/dev0/access-batch', { access: 'read', iovas });
    await until(() => plain.msgs.length >= 600 && sub.msgs.flat().length >= 600);
    expect(BURST_MAX).toBe(256);
    expect(sub.msgs.map((m) => m.length)).toEqual([256, 256, 88]);
    expect(sub.msgs.flat()).toEqual(plain.msgs);
    expect(plain.msgs.map((m) => m.iova)).toEqual(iovas.map((a) => `0x${a.toString(16)}`));
    plain.ws.close();
    sub.ws.close();
  });

  it('an operator answers a stall on the socket; an observer may not', async () => {
    await c.call('PATCH', '/smmus/smmu0/contexts/dev0', { faultMode: 'stall' });
    const obs = (await c.call('POST', '/tokens', { role: 'observer' })).body.token;
    const o = await open(`${base}?token=${obs}&types=stall,resume`);
    const w = await open(`${base}?token=${c.token}&types=stall,resume`);
    const acc = await c.call('POST', '/devices/dev0/access', { iova: 0x7000, access: 'read' });
    await until(() => w.msgs.length >= 1);
    o.ws.send(JSON.stringify({ type: 'resume', stall: acc.body.stall, action: 'terminate' }));
    await until(() => o.msgs.some((m) => m.type === 'error'));
    expect(o.msgs.find((m) => m.type === 'error').error.code).toBe('FORBIDDEN');
    w.ws.send(JSON.stringify({ type: 'resume', stall: acc.body.stall, action: 'terminate' }));
    await until(() => w.msgs.some((m) => m.type === 'resume'));
    expect(w.msgs.find((m) => m.type === 'resume')).toMatchObject({ stall: acc.body.stall, action: 'terminate', outcome: 'terminated' });
    await c.call('PATCH', '/smmus/smmu0/contexts/dev0', { faultMode: 'terminate' });
    o.ws.close();
    w.ws.close();
  });
});
