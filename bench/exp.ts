import autocannon from 'autocannon';
import { fork } from 'node:child_process';
const child = fork(new URL('./http-server.ts', import.meta.url), [], { execArgv: ['--import', 'tsx', '--cpu-prof', '--cpu-prof-dir=/tmp/prof'] });
const srv: any = await new Promise((res) => child.once('message', res));
const headers = { authorization: `Bearer ${srv.token}`, 'content-type': 'application/json' };
const base = `/v1/sessions/${srv.sid}`;
let nextPage = 0;
const r = await autocannon({ url: srv.address, connections: 16, duration: 4, requests: [
  { method: 'POST', path: `${base}/domains/${srv.did}/map`, headers, setupRequest: (req: any, ctx: any) => { if (ctx.page === undefined) ctx.page = nextPage++; return { ...req, body: JSON.stringify({ iova: 0x1000 * (1 + ctx.page), paddr: '0x80000000', size: 4096, prot: ['read', 'write'] }) }; } },
  { method: 'POST', path: `${base}/domains/${srv.did}/unmap`, headers, setupRequest: (req: any, ctx: any) => ({ ...req, body: JSON.stringify({ iova: 0x1000 * (1 + ctx.page), size: 4096 }) }) },
] } as any);
console.log(r.requests.average, r.non2xx);
child.send('stop');
await new Promise((r) => child.once('exit', r));
