import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { decodeReply, encodeRequest, OP_READ, OP_TRANSLATE_READ, STREAM_MAX_BYTES, WS_SESSION_GONE } from '../../src/api/stream.js';
import { build } from '../../src/server/app.js';
import { until } from '../support/wait.js';

/** The binary stream through a raw ws client: caps, a handler that throws, backpressure, session deletion. */
describe('binary stream: bounded, and no frame can take the daemon down', () => {
  let app: FastifyInstance;
  let base: string;
  let sid: string;
  let token: string;
  const open = async (path: string, query = '') => {
    const ws = new WebSocket(`${base}/v1/sessions/${sid}${path}${query}`, { headers: { authorization: `Bearer ${token}` } });
    const messages: Array<{ binary: boolean; data: Buffer }> = [];
    ws.on('message', (data, binary) => messages.push({ binary, data: data as Buffer }));
    const closed = new Promise<{ code: number; reason: string }>((r) => ws.on('close', (code, reason) => r({ code, reason: String(reason) })));
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    return { ws, messages, closed };
  };
  const call = async (method: string, url: string, payload?: object) =>
    app.inject({ method: method as 'GET', url: `/v1/sessions/${sid}${url}`, headers: { authorization: `Bearer ${token}` }, ...(payload ? { payload } : {}) });
  const revision = async () => (await call('GET', '/')).json().revision as number;

  beforeAll(async () => {
    app = await build({ wsHighWater: 256 * 1024 });
    base = (await app.listen({ port: 0, host: '127.0.0.1' })).replace('http', 'ws');
    const created = (await app.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'tiny' } })).json();
    sid = created.id;
    token = created.token;
    const d = (await call('POST', '/domains', {})).json().id;
    await call('POST', `/domains/${d}/attach`, { device: 'dev0' });
    await call('POST', `/domains/${d}/map`, { iova: '0x10000000', paddr: '0x80000000', size: '0x400000', prot: ['read'] });
  });
  afterAll(() => app.close());

  it('a read frame of 2 items of 2 GiB is refused with PAYLOAD_TOO_LARGE and changes nothing; the limit itself is served', async () => {
    const { ws, messages } = await open('/devices/dev0/stream');
    const rev = await revision();
    const big = (id: number, lengths: number[]) => encodeRequest({ id, op: OP_READ, priv: false, mid: 0xff, iovas: Uint32Array.from(lengths.map(() => 0x10000000)), lengths: Uint32Array.from(lengths) });
    ws.send(big(1, [2 ** 31, 2 ** 31]));
    ws.send(big(2, [STREAM_MAX_BYTES, 1]));
    ws.send(big(3, [STREAM_MAX_BYTES / 2, STREAM_MAX_BYTES / 2]));
    await until(() => messages.length === 3, 30_000);
    for (const [i, id] of [[0, 1], [1, 2]] as const) {
      expect(messages[i]!.binary).toBe(false);
      expect(JSON.parse(String(messages[i]!.data))).toMatchObject({ type: 'error', id, error: { code: 'PAYLOAD_TOO_LARGE', details: { limit: STREAM_MAX_BYTES } } });
    }
    const ok = decodeReply(new Uint8Array(messages[2]!.data));
    expect(ok.id).toBe(3);
    expect(ok.items.map((x) => x.status)).toEqual(['ok', 'ok']);
    expect(ok.data.length).toBe(STREAM_MAX_BYTES);
    expect(await revision()).toBe(rev + 1); // only the served frame
    ws.close();
  });

  it('an unexpected exception in the handler closes the socket with 1011 and a reason; the daemon keeps serving', async () => {
    const { ws, closed } = await open('/devices/dev0/stream');
    const s = app.registry.get(sid)!;
    const run = s.run;
    s.run = () => {
      throw new TypeError('boom');
    };
    try {
      ws.send(encodeRequest({ id: 9, op: OP_TRANSLATE_READ, priv: false, mid: 0xff, iovas: Uint32Array.of(0x10000000) }));
      expect(await closed).toEqual({ code: 1011, reason: 'internal error' });
    } finally {
      s.run = run;
    }
    expect((await call('GET', '/')).statusCode).toBe(200);
  });

  it('a client that does not read: the daemon stops reading its socket past the high-water mark, then serves every frame in order', async () => {
    const { ws, messages } = await open('/devices/dev0/stream');
    const server = [...app.websocketServer.clients].at(-1)!;
    ws.pause();
    const rev = await revision();
    const iovas = Uint32Array.from({ length: 4096 }, (_, i) => 0x10000000 + 4 * i);
    const n = 600;
    for (let id = 1; id <= n; id++) ws.send(encodeRequest({ id, op: OP_TRANSLATE_READ, priv: false, mid: 0xff, iovas }));
    await until(() => server.isPaused, 60_000);
    // Stopped: what it answered but the client has not taken is bounded by the mark (plus the frames already read).
    const served = (await revision()) - rev;
    expect(served).toBeLessThan(n);
    ws.resume();
    await until(() => messages.length === n, 120_000);
    expect(messages.map((m) => decodeReply(new Uint8Array(m.data)).id)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(decodeReply(new Uint8Array(messages[n - 1]!.data)).items[4095]).toMatchObject({ status: 'ok', paddr: 0x80000000 + 4 * 4095 });
    expect(server.isPaused).toBe(false);
    ws.close();
  }, 180_000);

  it('event and stream sockets of a deleted session are closed with a reason', async () => {
    const events = await open('/events', `?token=${token}`);
    const stream = await open('/devices/dev0/stream');
    expect((await call('DELETE', '/')).statusCode).toBe(204);
    expect(await events.closed).toEqual({ code: WS_SESSION_GONE, reason: 'session deleted' });
    expect(await stream.closed).toEqual({ code: WS_SESSION_GONE, reason: 'session deleted' });
    expect(JSON.parse(String(events.messages.at(-1)!.data))).toMatchObject({ type: 'session', action: 'delete' });
  });
});
