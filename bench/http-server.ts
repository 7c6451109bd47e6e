// The daemon as the HTTP benchmarks drive it: a child process on a core of its own (bench/pin.ts).
import { build } from '../src/server/app.js';

const app = await build({ dataDir: process.env.BENCH_DATA_DIR || null });
// The baseline: a route that does nothing, under the same server options.
app.get('/bench/empty', async () => ({}));
// For reference: the same, for a POST with a small JSON body (what map and access requests are).
app.post('/bench/empty', async () => ({}));
// And the most any such POST route can reach: one whose JSON body nobody reads (its content-type parser answers at
// once; Node discards the bytes), so what it costs over the empty GET is Node's and Fastify's handling of a body.
await app.register(async (scope) => {
  scope.removeContentTypeParser('application/json');
  scope.addContentTypeParser('application/json', (_req, _payload, done) => done(null, undefined));
  scope.post('/bench/unread-body', async () => ({}));
});
const address = await app.listen({ port: 0, host: '127.0.0.1' });
const s = (await app.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'tiny', tlbEntries: 1024 } })).json();
const auth = { authorization: `Bearer ${s.token}` };
const did = (await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains`, headers: auth, payload: {} })).json().id;
await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains/${did}/attach`, headers: auth, payload: { device: 'dev0' } });
await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains/${did}/map`, headers: auth, payload: { iova: '0x40000000', paddr: '0x80000000', size: 4096, prot: ['read', 'write'] } });
await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains/${did}/map`, headers: auth, payload: { iova: '0x50000000', paddr: '0x80100000', size: 0x10000, prot: ['read', 'write'] } });
// BENCH_PROFILE_FILE: a CPU profile of the daemon under load only (the profiler starts once the daemon is ready,
// so module loading is not in it), written when the benchmark stops the daemon. Same format as node --cpu-prof.
let stopProfile: (() => Promise<void>) | null = null;
if (process.env.BENCH_PROFILE_FILE) {
  const { Session: Inspector } = await import('node:inspector/promises');
  const { writeFileSync } = await import('node:fs');
  const inspector = new Inspector();
  inspector.connect();
  await inspector.post('Profiler.enable');
  await inspector.post('Profiler.start');
  stopProfile = async () => {
    const { profile } = await inspector.post('Profiler.stop');
    writeFileSync(process.env.BENCH_PROFILE_FILE!, JSON.stringify(profile));
  };
}
process.send!({ address, sid: s.id, token: s.token, did });
process.on('message', (m) => {
  if (m === 'stop') void (stopProfile?.() ?? Promise.resolve()).then(() => app.close()).then(() => process.exit(0));
  // The CPU time (user + system, µs) this daemon has used: per request, a cost that a shared core's time slicing
  // does not stretch the way it stretches throughput.
  if (m === 'cpu') {
    const u = process.cpuUsage();
    process.send!({ cpu: u.user + u.system });
  }
  if (m === 'rss') {
    // Two full collections (the daemon runs with --expose-gc for this): RSS then holds live state, not garbage.
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    gc?.();
    process.send!({ rss: process.memoryUsage().rss });
  }
});
