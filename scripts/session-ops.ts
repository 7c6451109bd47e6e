/**
 * CPU per command of what the map/unmap and access routes call (Session.view.apply), in process, without HTTP:
 * `npx tsx scripts/session-ops.ts [map-unmap|access] [--root DIR] [--n N] [--runs R]`. The session is the bench
 * daemon's (tiny, TLB 1,024, dev0 attached, one page at 0x40000000); each run is N map+unmap pairs or N accesses
 * after a warm-up, and the line gives the min and median over runs of CPU µs per command. --root measures another
 * checkout (an A/B against a base worktree); run it under `node --import tsx --cpu-prof` for a profile.
 */
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { root: { type: 'string' }, n: { type: 'string', default: '50000' }, runs: { type: 'string', default: '5' } } });
const root = values.root ?? new URL('..', import.meta.url).pathname;
const { build } = (await import(`${root}/src/server/app.ts`)) as typeof import('../src/server/app.js');
const N = Number(values.n);
const mode = positionals[0] ?? 'both';

const app = await build({ dataDir: null });
const s = (await app.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'tiny', tlbEntries: 1024 } })).json();
const auth = { authorization: `Bearer ${s.token}` };
const did = (await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains`, headers: auth, payload: {} })).json().id;
await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains/${did}/attach`, headers: auth, payload: { device: 'dev0' } });
await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains/${did}/map`, headers: auth, payload: { iova: '0x40000000', paddr: '0x80000000', size: 4096, prot: ['read', 'write'] } });
const sess = app.registry.sessions.get(s.id)!;
const actor = { role: 'owner' as const, label: null };

async function mapUnmap(n: number): Promise<number> {
  for (let i = 0; i < n; i++) {
    const iova = 0x1000 * (1 + (i & 15));
    await sess.view.apply(actor, { op: 'map', did, iova, paddr: 0x80000000, size: 4096, prot: ['read', 'write'] });
    await sess.view.apply(actor, { op: 'unmap', did, iova, size: 4096 });
  }
  return 2 * n;
}
async function access(n: number): Promise<number> {
  for (let i = 0; i < n; i++) await sess.view.apply(actor, { op: 'access', device: 'dev0', iova: 0x40000010, access: 'read' });
  return n;
}

for (const [name, f] of [['map-unmap', mapUnmap], ['access', access]] as const) {
  if (mode !== 'both' && mode !== name) continue;
  await f(N / 2);
  const cpu: number[] = [];
  for (let r = 0; r < Number(values.runs); r++) {
    const t0 = process.cpuUsage();
    const ops = await f(N);
    const t = process.cpuUsage(t0);
    cpu.push((t.user + t.system) / ops);
  }
  cpu.sort((a, b) => a - b);
  console.log(`${name}: CPU µs per command min ${cpu[0]!.toFixed(3)}, median ${cpu[cpu.length >> 1]!.toFixed(3)} (${cpu.length} runs of ${N})`);
}
await app.close();
