/**
 * Process-wide: a real daemon started with --unhandled-rejections=strict (any rejected promise nobody awaits
 * ends it) goes through the suite's fault injections — journal writes failing on a full disk (a file-size limit:
 * EFBIG, as ENOSPC would), including under a WebSocket `resume`, and the data dir deleted under it — and must still
 * be alive and answering after each; and so through damaged traces replayed (the trace fuzz's cases, some of them
 * failing on the file-size limit).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import WebSocket from 'ws';
import { build } from '../../src/server/app.js';
import { applyDamage, damage, richTrace, RICH_SESSION, type Call } from '../support/trace-fuzz.js';

/** Journal bytes the daemon may write (RLIMIT_FSIZE, in 1 KiB blocks for the shell's ulimit). */
const FILE_LIMIT_KIB = 64;
const LIMIT = FILE_LIMIT_KIB * 1024;

let child: ChildProcess | null = null;
const dirs: string[] = [];
afterEach(() => {
  child?.kill('SIGKILL');
  child = null;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function start(dir: string): Promise<{ url: string; proc: ChildProcess; exited: Promise<string> }> {
  // SIGXFSZ ignored, so a write past the limit fails with EFBIG instead of killing the process.
  const cmd = `trap '' XFSZ; ulimit -f ${FILE_LIMIT_KIB}; exec "${process.execPath}" --unhandled-rejections=strict --import tsx src/cli/iommud.ts --port 0 --data-dir "${dir}"`;
  const proc = spawn('bash', ['-c', cmd], { env: { ...process.env, LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
  child = proc;
  let out = '';
  proc.stdout!.on('data', (d) => (out += String(d)));
  proc.stderr!.on('data', (d) => (out += String(d)));
  const exited = new Promise<string>((r) => proc.once('exit', (code, sig) => r(`exit ${code ?? sig}: ${out}`)));
  const url = await new Promise<string>((resolve, reject) => {
    const t = setInterval(() => {
      const m = /listening at (http:\/\/127\.0\.0\.1:\d+)/i.exec(out);
      if (m) {
        clearInterval(t);
        resolve(m[1]!);
      }
    }, 20);
    void exited.then((why) => {
      clearInterval(t);
      reject(new Error(why));
    });
  });
  return { url, proc, exited };
}

describe('no fault ends the daemon (--unhandled-rejections=strict)', () => {
  it('journal writes failing (file-size limit) under HTTP and a WebSocket resume, then the data dir deleted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'iommud-faults-'));
    dirs.push(dir);
    const { url, proc, exited } = await start(dir);
    const alive = async () => {
      expect(proc.exitCode, await Promise.race([exited, Promise.resolve('running')])).toBe(null);
      const h = await fetch(`${url}/health`);
      expect(h.status).toBe(200);
    };
    const json = { 'content-type': 'application/json' };
    const s = await (await fetch(`${url}/v1/sessions`, { method: 'POST', headers: json, body: JSON.stringify({ profile: 'tiny' }) })).json();
    const auth = { authorization: `Bearer ${s.token}` };
    const call = (method: string, path: string, body?: unknown) =>
      fetch(`${url}/v1/sessions/${s.id}${path}`, { method, headers: { ...auth, ...json }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    const journal = join(dir, `${s.id}.journal`);

    // A stalled transaction to resume later over the event socket.
    expect((await call('POST', '/domains', {})).status).toBe(201);
    expect((await call('POST', '/domains/dom-1/attach', { device: 'dev0' })).status).toBe(200);
    expect((await call('PATCH', '/smmus/smmu0/contexts/dev0', { faultMode: 'stall' })).status).toBe(200);
    const stalled = await (await call('POST', '/devices/dev0/access', { iova: '0x100000', access: 'read' })).json();
    expect(stalled.outcome).toBe('stalled');

    // Fill the journal to just short of the limit with CPU writes of a measured size.
    const put = (bytes: number) => fetch(`${url}/v1/sessions/${s.id}/memory?paddr=0x80000000`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/octet-stream' }, body: Buffer.alloc(bytes, 7) });
    let size = statSync(journal).size;
    expect((await put(3)).status).toBe(204);
    const overhead = statSync(journal).size - size - 4;
    size = statSync(journal).size;
    const room = LIMIT - 80 - size - overhead; // leaves ~80 bytes: less than a resume record
    expect((await put(3 * Math.floor(room / 4))).status).toBe(204);
    expect(LIMIT - statSync(journal).size).toBeLessThan(120);
    await alive();

    // The resume's own journal write fails: answered on the socket, the process lives.
    const ws = new WebSocket(`${url.replace('http', 'ws')}/v1/sessions/${s.id}/events?token=${s.token}&types=resume`);
    await new Promise((r) => ws.once('open', r));
    // (The resume event itself goes out before the write; the refusal follows it.)
    const answer = new Promise<any>((r) => ws.on('message', (m) => JSON.parse(String(m)).type === 'error' && r(JSON.parse(String(m)))));
    ws.send(JSON.stringify({ type: 'resume', stall: stalled.stall, action: 'terminate' }));
    const died = exited.then((why) => Promise.reject(new Error(`the daemon died: ${why}`)));
    died.catch(() => {}); // once the test is over the daemon is killed on purpose
    expect(await Promise.race([answer, died])).toMatchObject({ type: 'error', error: { code: 'UNAVAILABLE' } });
    await alive();
    // Undone: the transaction is still stalled.
    const ctx = await (await call('GET', '/smmus/smmu0/contexts/dev0')).json();
    expect(ctx.stalls.map((x: { stall: string }) => x.stall)).toEqual([stalled.stall]);

    // HTTP mutations and a token on the full journal: 503, never a crash.
    const m = await call('POST', '/domains/dom-1/map', { iova: '0x200000', paddr: '0x80000000', size: 0x100000, prot: ['read'] });
    expect(m.status).toBe(503);
    expect((await call('POST', '/tokens', { role: 'observer' })).status).toBe(503);
    await alive();

    // The data dir goes away: mutations, deletes and creations answer 503; the daemon keeps serving.
    rmSync(dir, { recursive: true, force: true });
    expect((await call('POST', '/domains', {})).status).toBe(503);
    expect((await call('DELETE', '/')).status).toBe(503);
    expect((await fetch(`${url}/v1/sessions`, { method: 'POST', headers: json, body: '{}' })).status).toBe(503);
    expect((await call('GET', '/')).status).toBe(200);
    ws.close();
    await alive();
  }, 60_000);

  it('damaged traces (truncated, reordered, mutated; some past the file-size limit) never end it', async () => {
    // Exported from an in-process daemon: one plain, one compacted into a snapshot record (larger than the limit).
    const src = await build({ dataDir: null });
    const snapDir = mkdtempSync(join(tmpdir(), 'iommud-faults-'));
    dirs.push(snapDir);
    const compacting = await build({ dataDir: snapDir, compactEvery: 5 });
    const inject = (app: typeof src): Call => async (method, url, body, headers = {}) => {
      const raw = Buffer.isBuffer(body);
      const r = await app.inject({ method: method as 'POST', url, headers: { ...headers, ...(body !== undefined ? { 'content-type': raw ? 'application/octet-stream' : 'application/json' } : {}) }, ...(body !== undefined ? { payload: raw ? body : JSON.stringify(body) } : {}) });
      return { status: r.statusCode, body: r.body };
    };
    const traces = [await richTrace(inject(src), RICH_SESSION), await richTrace(inject(compacting), RICH_SESSION)];
    await src.close();
    await compacting.close();

    const dir = mkdtempSync(join(tmpdir(), 'iommud-faults-'));
    dirs.push(dir);
    const { url, proc, exited } = await start(dir);
    const died = exited.then((why) => Promise.reject(new Error(`the daemon died: ${why}`)));
    died.catch(() => {});
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.array(damage, { minLength: 1, maxLength: 3 }), async (which, damages) => {
        const body = JSON.stringify({ trace: applyDamage(traces[which % traces.length]!, damages) });
        const r = await Promise.race([fetch(`${url}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }), died]);
        expect(r.status, await r.clone().text()).toBeLessThan(r.status === 503 ? 504 : 500);
        if (r.status === 201) {
          const { id, token } = (await r.json()) as { id: string; token: string };
          await fetch(`${url}/v1/sessions/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
        }
      }),
      { numRuns: 60, seed: 11 },
    );
    expect(proc.exitCode).toBe(null);
    expect((await fetch(`${url}/health`)).status).toBe(200);
  }, 120_000);
});
