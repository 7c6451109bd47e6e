/**
 * Trace fuzz (issue 11, "Done when"): exported traces of sessions using every kind of state, truncated, reordered
 * and mutated, replayed through the API with and without --data-dir hold the HTTP fuzz's guarantees: never a 5xx,
 * an error body for every refusal, and a refused replay leaves no session and no file; an accepted one is a
 * session that answers. (No hang: every case runs under the test timeout. No crash: test/session/faults.process
 * replays the same damaged traces in a daemon run with --unhandled-rejections=strict.)
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/server/app.js';
import { applyDamage, damage, richTrace, RICH_SESSION, type Call } from '../support/trace-fuzz.js';

type App = Awaited<ReturnType<typeof build>>;

function caller(app: App): Call {
  return async (method, url, body, headers = {}) => {
    const raw = Buffer.isBuffer(body);
    const r = await app.inject({
      method: method as 'POST',
      url,
      headers: { ...headers, ...(body !== undefined ? { 'content-type': raw ? 'application/octet-stream' : 'application/json' } : {}) },
      ...(body !== undefined ? { payload: raw ? body : JSON.stringify(body) } : {}),
    });
    return { status: r.statusCode, body: r.body };
  };
}

for (const persist of [false, true]) {
  describe(`damaged traces replayed ${persist ? 'with' : 'without'} --data-dir`, () => {
    let app: App;
    let dir: string | null = null;
    const traces: string[] = [];
    beforeAll(async () => {
      dir = persist ? mkdtempSync(join(tmpdir(), 'iommud-tfuzz-')) : null;
      app = await build({ dataDir: dir });
      traces.push(await richTrace(caller(app), RICH_SESSION));
      // Compacted every 5 records: this trace starts from a snapshot record (RAM, tables, DMA, cache, bounce).
      const snapDir = mkdtempSync(join(tmpdir(), 'iommud-tfuzz-'));
      const compacting = await build({ dataDir: snapDir, compactEvery: 5 });
      traces.push(await richTrace(caller(compacting), { ...RICH_SESSION, name: 'snap' }));
      await compacting.close();
      rmSync(snapDir, { recursive: true, force: true });
    });
    afterAll(async () => {
      await app.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('the undamaged traces replay (control), one of them from a snapshot record', async () => {
      expect(traces[1]!.split('\n')[1]!.startsWith('{"snapshot":')).toBe(true);
      for (const t of traces) {
        const r = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { trace: t } });
        expect(r.statusCode, r.body.slice(0, 300)).toBe(201);
        await app.inject({ method: 'DELETE', url: `/v1/sessions/${r.json().id}`, headers: { authorization: `Bearer ${r.json().token}` } });
      }
    });

    it(`random damage: never a 5xx; a refusal is an error body and leaves the session count${persist ? ' and the data dir' : ''} as before`, async () => {
      const files = () => (dir ? readdirSync(dir).sort() : []);
      let refused = 0;
      let accepted = 0;
      await fc.assert(
        fc.asyncProperty(fc.nat(), fc.array(damage, { minLength: 1, maxLength: 3 }), fc.boolean(), async (which, damages, asArray) => {
          const text = applyDamage(traces[which % traces.length]!, damages);
          // A trace is JSON lines or, when every line parses, the same records as an array.
          let trace: unknown = text;
          if (asArray) {
            try {
              trace = text.trim().split('\n').map((l) => JSON.parse(l) as unknown);
            } catch {
              trace = text;
            }
          }
          const sessions = (await app.inject({ method: 'GET', url: '/health' })).json().sessions;
          const before = files();
          const r = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { trace } });
          expect(r.statusCode, r.body.slice(0, 500)).toBeLessThan(500);
          if (r.statusCode === 201) {
            accepted++;
            const { id, token } = r.json();
            const h = { authorization: `Bearer ${token}` };
            // What was made answers: its state and its own trace, without a 5xx.
            for (const url of ['', '/domains', '/smmus', '/buffers', '/trace', '/cache', '/devices/dev0/dma', '/devices/dev1/dma']) {
              const g = await app.inject({ method: 'GET', url: `/v1/sessions/${id}${url}`, headers: h });
              expect(g.statusCode, `${url}: ${g.body.slice(0, 300)}`).toBeLessThan(500);
            }
            // And it takes further work: accesses, maps, DMA mappings, buffers, cache maintenance.
            const more: Array<[string, string, object]> = [
              ['POST', '/devices/dev0/access', { iova: '0x10', access: 'read' }],
              ['POST', '/domains/dom-1/map', { iova: '0x400000', paddr: '0x80000000', size: 0x2000, prot: ['read'] }],
              ['POST', '/domains/dom-1/unmap', { iova: '0x0', size: 0x10000 }],
              ['POST', '/devices/dev1/dma/map', { paddr: '0x80430000', size: 0x1000, dir: 'from-device' }],
              ['POST', '/devices/dev0/dma/map', { paddr: '0x81000100', size: 0x40, dir: 'to-device' }],
              ['POST', '/buffers', { size: 0x1000 }],
              ['POST', '/cache/flush', { paddr: '0x80400000', size: 0x1000 }],
            ];
            for (const [method, url, payload] of more) {
              const a = await app.inject({ method: method as 'POST', url: `/v1/sessions/${id}${url}`, headers: h, payload });
              expect(a.statusCode, `${url}: ${a.body.slice(0, 300)}`).toBeLessThan(500);
            }
            // What was accepted exports a trace that replays again (a replay makes nothing it cannot account for).
            const again = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { trace: (await app.inject({ method: 'GET', url: `/v1/sessions/${id}/trace`, headers: h })).body } });
            expect(again.statusCode, again.body.slice(0, 500)).toBe(201);
            await app.inject({ method: 'DELETE', url: `/v1/sessions/${again.json().id}`, headers: { authorization: `Bearer ${again.json().token}` } });
            expect((await app.inject({ method: 'DELETE', url: `/v1/sessions/${id}`, headers: h })).statusCode).toBe(204);
          } else {
            refused++;
            expect(r.json().error.code).toMatch(/^[A-Z_]+$/);
            expect((await app.inject({ method: 'GET', url: '/health' })).json().sessions).toBe(sessions);
            expect(files()).toEqual(before);
          }
        }),
        { numRuns: persist ? 120 : 300, seed: Number(process.env.TRACE_FUZZ_SEED ?? 11) },
      );
      // The damage is real: most cases are refused, and some still replay.
      expect(refused).toBeGreaterThan(accepted);
      expect(accepted).toBeGreaterThan(0);
    }, 300_000);
  });
}
