/**
 * Sessions per node: how fast a pinned daemon creates sessions over HTTP (a CI farm opens one per test job) and
 * what an idle msm8x60 session adds to the daemon's RSS, over 1,000 of them, after a full GC.
 */
import autocannon from 'autocannon';
import type { BenchResult } from './report.js';
import { startServer, stopServer } from './http.js';

const SESSIONS = process.env.BENCH_QUICK ? 200 : 1000;
const WARMUP = SESSIONS / 5;

export async function sessionBenchmarks(): Promise<BenchResult[]> {
  const { child, srv } = await startServer({ gc: true, profile: 'sessions-create' });
  try {
    // Unmeasured creates first, as the HTTP loads warm their route (bench/http.ts): a CI farm's daemon runs for
    // days, so the figure is a warm daemon's rate, not its first second's JIT. They stay; RSS is counted after them.
    await create(srv.address, WARMUP);
    const rss0 = await srv.rss();
    const t0 = process.hrtime.bigint();
    // Timed to the last response: autocannon resolves an `amount` run only at its next 1 s sample tick, which
    // made this figure 1000/ceil(seconds) (never above 1,000/s for 1,000 sessions).
    let last = t0;
    const r = await new Promise<autocannon.Result>((resolve, reject) => {
      const load = autocannon(
        {
          url: `${srv.address}/v1/sessions`,
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ profile: 'msm8x60' }),
          connections: 16,
          amount: SESSIONS,
        },
        (err, result) => (err ? reject(err) : resolve(result)),
      );
      load.on('response', () => {
        last = process.hrtime.bigint();
      });
    });
    const s = Number(last - t0) / 1e9;
    if (r.non2xx || r.errors || r['2xx'] !== SESSIONS) throw new Error(`sessions-create: ${r.non2xx + r.errors} of ${SESSIONS} creations failed`);
    const rss1 = await srv.rss();
    return [
      { name: 'sessions-create', value: SESSIONS / s, unit: 'sessions/s', note: `POST /v1/sessions (msm8x60, in memory), 16 connections, ${SESSIONS} sessions after ${WARMUP} unmeasured ones` },
      { name: 'session-idle-rss', value: (rss1 - rss0) / SESSIONS, unit: 'bytes', note: `daemon RSS growth per idle msm8x60 session over ${SESSIONS} sessions, after a full GC` },
    ];
  } finally {
    await stopServer(child);
  }
}

function create(address: string, amount: number): Promise<void> {
  return new Promise((resolve, reject) =>
    autocannon(
      { url: `${address}/v1/sessions`, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ profile: 'msm8x60' }), connections: 16, amount },
      (err, r) => (err ? reject(err) : r['2xx'] !== amount ? reject(new Error(`warm-up: ${amount - r['2xx']} of ${amount} creations failed`)) : resolve()),
    ),
  );
}
