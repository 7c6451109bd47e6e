import autocannon from 'autocannon';
import { fork } from 'node:child_process';
const child = fork(new URL('./http-server.ts', import.meta.url), [], { execArgv: ['--import', 'tsx', '--cpu-prof', '--cpu-prof-dir=/tmp/prof'] });
const srv: any = await new Promise((res) => child.once('message', res));
const headers = { authorization: `Bearer ${srv.token}`, 'content-type': 'application/json' };
const r = await autocannon({ url: `${srv.address}/v1/sessions/${srv.sid}/devices/dev0/access`, method: 'POST', headers, body: JSON.stringify({ iova: '0x40000010', access: 'read' }), connections: 16, duration: 4 } as any);
console.log(r.requests.average, r.non2xx);
child.send('stop');
await new Promise((r) => child.once('exit', r));
