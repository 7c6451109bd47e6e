/**
 * Issue 16, scale of one node: thousands of sessions per daemon (--max-sessions, default 4,096), with the state
 * an idle session does not use allocated on first use — and behaving exactly as when it was allocated up front.
 */
import { spawn } from 'node:child_process';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { EventBus, type IommuEvent } from '../../src/events/bus.js';
import { PhysMemory } from '../../src/memory/phys.js';
import { build } from '../../src/server/app.js';
import { DEFAULT_MAX_SESSIONS, SessionRegistry } from '../../src/session/session.js';
import { MSM8X60 } from '../../src/hw/profile.js';

type App = Awaited<ReturnType<typeof build>>;
const apps: App[] = [];
afterEach(async () => {
  for (const a of apps.splice(0)) await a.close();
});

describe('session limit', () => {
  it('defaults to 4,096: the 65th session of a daemon is created', async () => {
    const app = await build();
    apps.push(app);
    for (let i = 0; i < 65; i++) {
      const r = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'msm8x60' } });
      expect(r.statusCode).toBe(201);
    }
    expect(DEFAULT_MAX_SESSIONS).toBe(4096);
    expect(app.registry.limits.maxSessions).toBe(4096);
    expect(new SessionRegistry().limits.maxSessions).toBe(4096);
  });

  it('an idle msm8x60 session holds no RAM chunk and no page-table pool unit', async () => {
    const reg = new SessionRegistry();
    const { session } = await reg.create({ name: 'idle', profile: MSM8X60 });
    expect([session.soc.mem.bytesHeld, session.soc.ptPool.bytesUsed]).toEqual([0, 0]);
    await reg.closeAll();
  });
});

/** Starts the daemon with `args` and `env`; resolves with its URL, or with its exit code when it stops first. */
function daemon(args: string[], env: Record<string, string> = {}): Promise<{ url: string; stop: () => void } | { code: number | null; stderr: string }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/iommud.ts', '--port', '0', ...args], { env: { ...process.env, LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve) => {
    let out = '';
    let err = '';
    proc.stderr!.on('data', (d) => (err += String(d)));
    proc.stdout!.on('data', (d) => {
      out += String(d);
      const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve({ url: m[1]!, stop: () => proc.kill('SIGKILL') });
    });
    proc.once('exit', (code) => resolve({ code, stderr: err }));
  });
}

async function createSessions(url: string, n: number): Promise<Array<{ status: number; body: any }>> {
  const out = [];
  for (let i = 0; i < n; i++) {
    const r = await fetch(`${url}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"profile":"tiny"}' });
    out.push({ status: r.status, body: await r.json() });
  }
  return out;
}

describe('iommud --max-sessions / IOMMUD_MAX_SESSIONS', () => {
  it('--max-sessions 2: the third session is 429 LIMIT naming the limit', async () => {
    const d = await daemon(['--max-sessions', '2']);
    if (!('url' in d)) throw new Error(`daemon exited: ${d.stderr}`);
    try {
      const r = await createSessions(d.url, 3);
      expect(r.map((x) => x.status)).toEqual([201, 201, 429]);
      expect(r[2]!.body.error).toEqual({ code: 'LIMIT', message: 'the daemon holds at most 2 sessions', details: { limit: 2 } });
    } finally {
      d.stop();
    }
  }, 60_000);

  it('IOMMUD_MAX_SESSIONS=1 when the flag is absent', async () => {
    const d = await daemon([], { IOMMUD_MAX_SESSIONS: '1' });
    if (!('url' in d)) throw new Error(`daemon exited: ${d.stderr}`);
    try {
      expect((await createSessions(d.url, 2)).map((x) => x.status)).toEqual([201, 429]);
    } finally {
      d.stop();
    }
  }, 60_000);

  it('a value that is not a whole number of at least 1 is a usage error (exit 2)', async () => {
    for (const bad of ['0', '1.5']) {
      const d = await daemon(['--max-sessions', bad]);
      expect('code' in d && [d.code, d.stderr]).toEqual([2, `iommud: bad --max-sessions ${JSON.stringify(bad)} (a whole number of at least 1)\n`]);
    }
  }, 60_000);
});

describe('event ring allocated as events come', () => {
  /** The reference: every event ever emitted, the last `retain` of them retained. */
  function model(retain: number, seqs: number) {
    const first = Math.max(1, seqs - retain + 1);
    return { first, retained: Array.from({ length: Math.max(0, seqs - first + 1) }, (_, i) => first + i) };
  }

  it('replay, get and firstRetained match a ring of `retain` slots, across growth and restore', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 70 }), fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 200 }), (retain, n, since) => {
        const bus = new EventBus(retain);
        for (let i = 0; i < n; i++) bus.emit({ type: 'session', action: 'create', session: String(i + 1) });
        const m = model(retain, n);
        const check = (b: EventBus) => {
          expect(b.lastSeq).toBe(n);
          expect(b.firstRetained).toBe(retain === 0 ? n + 1 : m.first);
          const r = b.replay(since);
          const want = retain === 0 ? [] : m.retained.filter((s) => s > since);
          expect(r.events.map((e: IommuEvent) => [e.seq, e.type === 'session' ? e.session : null])).toEqual(want.map((s) => [s, String(s)]));
          for (let s = 1; s <= n; s++) expect(b.get(s)?.seq).toBe(retain !== 0 && s >= m.first ? s : undefined);
        };
        check(bus);
        const again = new EventBus(retain);
        again.restore(JSON.parse(JSON.stringify(bus.snapshot())));
        check(again);
        // Events after a restore continue the ring (and grow it) without losing the restored ones.
        for (let i = n; i < n + 20; i++) again.emit({ type: 'session', action: 'create', session: String(i + 1) });
        const after = model(retain, n + 20);
        expect(again.replay(0).events.map((e) => e.seq)).toEqual(retain === 0 ? [] : after.retained);
      }),
      { numRuns: 300 },
    );
  });
});

describe('RAM in 16 MiB groups of 64 KiB chunks', () => {
  it('words and bytes across chunk and group boundaries, zero where never written; snapshot and rollback exact', () => {
    const mem = new PhysMemory([{ name: 'ram', base: 0x00000000, size: 0x04000000 }]);
    expect(mem.read32(0x00fffffc)).toBe(0);
    mem.write32(0x00fffffc, 0x11223344);
    mem.write32(0x01000000, 0x55667788);
    expect([mem.read32(0x00fffffc), mem.read32(0x01000000), mem.read32(0x01000004), mem.read32(0x02000000)]).toEqual([0x11223344, 0x55667788, 0, 0]);
    expect([...mem.readBytes(0x00fffffe, 4)]).toEqual([0x22, 0x11, 0x88, 0x77]);
    expect(mem.bytesHeld).toBe(2 * 0x10000);
    expect([mem.version(0x00ff), mem.version(0x0100), mem.version(0x0101)]).toEqual([1, 1, 0]);

    mem.writeBytes(0x01fffffe, Uint8Array.of(1, 2, 3, 4));
    expect([mem.read32(0x01fffffc), mem.read32(0x02000000)]).toEqual([0x02010000, 0x0403]);

    const copy = new PhysMemory(mem.regions);
    copy.restore(JSON.parse(JSON.stringify(mem.snapshot())));
    for (const a of [0x00fffffc, 0x01000000, 0x01fffffc, 0x02000000, 0x03000000]) expect(copy.read32(a)).toBe(mem.read32(a));

    mem.begin();
    mem.write32(0x03000000, 7);
    mem.writeBytes(0x00fffffc, Uint8Array.of(9, 9, 9, 9));
    mem.rollback();
    expect([mem.read32(0x03000000), mem.read32(0x00fffffc)]).toEqual([0, 0x11223344]);
  });
});
