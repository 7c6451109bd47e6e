import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IommudClient, IommudConnectionError, IommudError, type EventType, type SessionClient } from '../../src/client/index.js';
import { build } from '../../src/server/app.js';
import { builtCli } from '../support/built.js';

/** A loopback port nobody listens on. */
async function deadPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

function ctl(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [builtCli('iommuctl'), ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('subscriptions fail loudly', () => {
  let app: FastifyInstance;
  let url: string;
  let s: SessionClient;
  beforeAll(async () => {
    app = await build();
    url = await app.listen({ port: 0, host: '127.0.0.1' });
    s = await new IommudClient({ url }).createSession({ profile: 'tiny' });
  });
  afterAll(() => app.close());

  it('a wrong token is final: ready() and done() reject with the server code, no reconnects', async () => {
    const reconnects: unknown[] = [];
    const sub = new IommudClient({ url }).session(s.id, 'not-a-token').subscribe({ onEvent: () => {}, onReconnect: (r) => reconnects.push(r) });
    const err = await sub.ready().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IommudError);
    expect(err).toMatchObject({ code: 'UNAUTHORIZED', status: 401 });
    await expect(sub.done()).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    expect(reconnects).toEqual([]);
  });

  it('a bad filter is final with BAD_REQUEST and the server message', async () => {
    // Not a type the SDK knows either: the cast is the point of the test (the daemon refuses it).
    const sub = s.subscribe({ types: ['no-such-event' as EventType], onEvent: () => {} });
    const err = (await sub.ready().catch((e: unknown) => e)) as IommudError;
    expect(err).toBeInstanceOf(IommudError);
    expect(err.code).toBe('BAD_REQUEST');
    expect(err.status).toBe(400);
    expect(err.message).toContain('/types');
  });

  it('a daemon that is not there: IommudConnectionError after the bounded attempts', async () => {
    const port = await deadPort();
    const sub = new IommudClient({ url: `http://127.0.0.1:${port}` }).session('s-1', 't').subscribe({ onEvent: () => {}, connectAttempts: 3, reconnect: { min: 5, max: 10 } });
    const err = await sub.ready().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IommudConnectionError);
    expect((err as Error).message).toContain(`127.0.0.1:${port}`);
  });

  it('a lost live connection is retried with a notice and resumes; a refusal at a reconnect (session deleted) ends it', async () => {
    const own = await new IommudClient({ url }).createSession({ profile: 'tiny' });
    const seen: number[] = [];
    const notices: Array<{ attempt: number; reason: string }> = [];
    const sub = own.subscribe({ onEvent: (e) => seen.push(e.seq), onReconnect: (r) => notices.push(r), reconnect: { min: 10, max: 20 } });
    await sub.ready();
    await own.allocDomain();
    while (seen.length < 1) await new Promise((r) => setTimeout(r, 10));
    sub.dropConnection();
    while (notices.length < 1) await new Promise((r) => setTimeout(r, 10));
    expect(notices[0]!.attempt).toBe(1);
    await own.allocDomain();
    while (seen.length < 2) await new Promise((r) => setTimeout(r, 10));
    expect(seen[1]).toBe(seen[0]! + 1);
    await own.delete();
    sub.dropConnection(); // the reconnect meets the refusal of a session that is gone
    await expect(sub.done()).rejects.toMatchObject({ code: 'UNAUTHORIZED', status: 401 });
  });

  it('asks for batched messages when the daemon offers them and hands the events over one by one, the same as unbatched', async () => {
    const own = await new IommudClient({ url }).createSession({ profile: 'tiny' });
    const d = await own.allocDomain();
    await own.attach(d.id, 'dev0');
    const got: Record<string, Array<[number, string]>> = { batched: [], plain: [] };
    const batched = own.subscribe({ types: ['fault'], onEvent: (e) => got.batched!.push([e.seq, e.iova]) });
    const plain = own.subscribe({ types: ['fault'], batch: false, onEvent: (e) => got.plain!.push([e.seq, e.iova]) });
    await Promise.all([batched.ready(), plain.ready()]);
    // The socket each one opened: the first asked for batch=1, the second did not.
    const urlOf = (sub: object) => (sub as unknown as { ws: { url: string } }).ws.url;
    expect(urlOf(batched)).toContain('batch=1');
    expect(urlOf(plain)).not.toContain('batch');
    await own.accessBatch('dev0', { access: 'read', iovas: Array.from({ length: 30 }, (_, i) => 0x30000000 + i * 0x1000) });
    while (got.batched!.length < 30 || got.plain!.length < 30) await new Promise((r) => setTimeout(r, 10));
    expect(got.batched).toEqual(got.plain);
    expect(got.batched!.map(([, iova]) => iova)).toEqual(Array.from({ length: 30 }, (_, i) => `0x${(0x30000000 + i * 0x1000).toString(16)}`));
    batched.close();
    plain.close();
    await own.delete();
  });

  it('iommuctl watch: a wrong token is exit 3 with the daemon message; no daemon is exit 4', async () => {
    const bad = await ctl(['watch'], { IOMMUD_URL: url, IOMMUD_SESSION: s.id, IOMMUD_TOKEN: 'wrong' });
    expect(bad.code).toBe(3);
    expect(bad.stderr).toBe('iommuctl: UNAUTHORIZED: unknown token for this session\n');
    const port = await deadPort();
    const none = await ctl(['watch'], { IOMMUD_URL: `http://127.0.0.1:${port}`, IOMMUD_SESSION: s.id, IOMMUD_TOKEN: 'x' });
    expect(none.code).toBe(4);
    expect(none.stderr).toContain(`cannot subscribe at ws://127.0.0.1:${port}`);
  }, 60_000);
});
