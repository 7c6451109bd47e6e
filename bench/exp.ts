import { build } from '../src/server/app.js';
const app = await build();
await app.ready();
const s = (await app.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'tiny' } })).json();
const headers = { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' };
const did = (await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains`, headers, payload: {} })).json().id;
await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains/${did}/attach`, headers, payload: { device: 'dev0' } });
await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains/${did}/map`, headers, payload: { iova: 0x4000, paddr: '0x80000000', size: 4096, prot: ['read'] } });
const o = { method: 'POST', url: `/v1/sessions/${s.id}/devices/dev0/access`, headers, payload: '{"iova":"0x4010","access":"read"}' } as const;
for (let round = 0; round < 3; round++) {
  const N = 30000;
  const t0 = performance.now();
  for (let i = 0; i < N; i++) await app.inject(o);
  console.log('access', ((performance.now() - t0) / N * 1000).toFixed(1), 'us');
}
const sess = app.registry.get(s.id)!;
const t0 = performance.now();
for (let i = 0; i < 200000; i++) sess.run(null, { op: 'access', device: 'dev0', iova: 0x4010, access: 'read' });
console.log('run only', ((performance.now() - t0) / 200000 * 1000).toFixed(2), 'us');
