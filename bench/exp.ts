import { fork } from 'node:child_process';
import WebSocket from 'ws';
const child = fork(new URL('./http-server.ts', import.meta.url), [], { execArgv: ['--import', 'tsx', '--cpu-prof', '--cpu-prof-dir=/tmp/prof'] });
const srv: any = await new Promise((res) => child.once('message', res));
let got = 0;
const subs = await Promise.all(Array.from({ length: 8 }, () => { const ws = new WebSocket(srv.address.replace('http', 'ws') + `/v1/sessions/${srv.sid}/events?types=fault&token=${srv.token}`); ws.on('message', () => got++); return new Promise<WebSocket>((r) => ws.once('open', () => r(ws))); }));
const headers = { authorization: `Bearer ${srv.token}`, 'content-type': 'application/json' };
const body = JSON.stringify({ access: 'read', iovas: Array.from({ length: 250 }, (_, i) => 0x10000000 + i * 0x1000) });
const t0 = Date.now(); let sent = 0; let reqT = 0;
while (Date.now() - t0 < 4000) { const a = performance.now(); const r = await fetch(`${srv.address}/v1/sessions/${srv.sid}/devices/dev0/access-batch`, { method: 'POST', headers, body }); await r.arrayBuffer(); reqT += performance.now() - a; sent += 250; }
console.log('sent', sent, 'per s', sent / 4, 'avg req ms', (reqT / (sent / 250)).toFixed(2), 'got', got / 8);
subs.forEach((w) => w.close());
child.send('stop'); await new Promise((r) => child.once('exit', r));
