#!/usr/bin/env node
/**
 * npm run cluster -- --nodes N --port P [--host H] [--data-dir DIR] [--state FILE]
 *
 * N daemons (node ids n1..nN, each on a loopback port, journals in DIR/nK) behind the system's HAProxy on H:P,
 * configured from deploy/haproxy/haproxy.cfg.template. With --state, writes {proxy: {pid, port}, nodes: [{id, pid,
 * port, dataDir}]} once every node answers /health through the proxy. Restarts nothing; SIGINT/SIGTERM stop all.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { renderHaproxyConfig } from '../cluster/haproxy.js';
import { findHaproxy, freePort, HAPROXY_INSTALL_HINT, nodeCommand, waitFor } from '../cluster/launch.js';

const USAGE = 'usage: npm run cluster -- --nodes N --port P [--host H] [--data-dir DIR] [--state FILE]\n';

function fail(msg: string, code = 2): never {
  process.stderr.write(`iommud cluster: ${msg}\n`);
  process.exit(code);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      nodes: { type: 'string', default: '3' },
      port: { type: 'string', default: '8080' },
      host: { type: 'string', default: '127.0.0.1' },
      'data-dir': { type: 'string' },
      state: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (e) {
  fail(`${(e as Error).message}\n${USAGE}`);
}
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const count = Number(values.nodes);
if (!Number.isInteger(count) || count < 1 || count > 64) fail(`--nodes takes 1 to 64, not ${values.nodes}`);
let proxyPort = Number(values.port);
if (!Number.isInteger(proxyPort) || proxyPort < 0 || proxyPort > 65535) fail(`bad --port ${values.port}`);
const host = values.host;
const dataDir = values['data-dir'] ? resolve(values['data-dir']) : null;
const statePath = values.state ? resolve(values.state) : null;

const haproxy = findHaproxy();
if (!haproxy) fail(`haproxy not found; ${HAPROXY_INSTALL_HINT}`);

const children: Array<{ name: string; child: ChildProcess }> = [];
const work = mkdtempSync(join(tmpdir(), 'iommud-cluster-'));
let stopping = false;

/** Output of a child, line by line, prefixed with its name. */
function relay(name: string, child: ChildProcess): void {
  for (const [from, to] of [[child.stdout, process.stdout], [child.stderr, process.stderr]] as const) {
    if (from) createInterface({ input: from }).on('line', (line) => to.write(`[${name}] ${line}\n`));
  }
}

function start(name: string, command: string, args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  children.push({ name, child });
  relay(name, child);
  child.on('exit', (code, signal) => {
    if (stopping) return;
    process.stderr.write(`iommud cluster: ${name} (pid ${child.pid}) exited (${signal ?? `code ${code}`}); not restarted\n`);
    // Without the proxy the cluster is unreachable: stop the rest rather than leave daemons nobody can use.
    if (name === 'haproxy') void stopAll(1);
  });
  return child;
}

const alive = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;

async function stopAll(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    const exits = children.filter(({ child }) => alive(child)).map(({ child }) => new Promise((r) => child.once('exit', r)));
    for (const { child } of children) if (alive(child)) child.kill('SIGTERM');
    const force = setTimeout(() => {
      for (const { child } of children) if (alive(child)) child.kill('SIGKILL');
    }, 10_000);
    await Promise.all(exits);
    clearTimeout(force);
    rmSync(work, { recursive: true, force: true });
  }
  process.exit(code);
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void stopAll(0));
// Whatever happens to this process, leave no daemon behind.
process.on('exit', () => {
  for (const { child } of children) if (alive(child)) child.kill('SIGKILL');
});

const nodes: Array<{ id: string; port: number; dataDir: string | null; child: ChildProcess }> = [];
for (let k = 1; k <= count; k++) {
  const id = `n${k}`;
  const dir = dataDir ? join(dataDir, id) : null;
  if (dir) mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const { command, args } = nodeCommand({ id, port, dataDir: dir });
  const child = start(id, command, args, { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' });
  nodes.push({ id, port, dataDir: dir, child });
}
const healthy = await Promise.all(nodes.map((n) => waitFor(`http://127.0.0.1:${n.port}/health`, 200, () => stopping || !alive(n.child))));
if (stopping) await new Promise(() => {}); // a signal arrived: stopAll exits
if (healthy.includes(false)) {
  process.stderr.write(`iommud cluster: ${nodes.filter((_n, i) => !healthy[i]).map((n) => n.id).join(', ')} did not start\n`);
  await stopAll(1);
}

if (proxyPort === 0) proxyPort = await freePort();
const cfg = join(work, 'haproxy.cfg');
writeFileSync(cfg, renderHaproxyConfig({ bind: `${host}:${proxyPort}`, nodes: nodes.map((n) => ({ id: n.id, address: `127.0.0.1:${n.port}` })) }));
// -db: foreground, no master process, so the pid is the proxy's own.
const proxy = start('haproxy', haproxy, ['-f', cfg, '-db']);

// Ready when the proxy routes to every node: an unknown session on a live node is its own 401 (a node still marked
// down would be the proxy's 503).
const probeHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
const routed = await Promise.all(nodes.map((n) => waitFor(`http://${probeHost}:${proxyPort}/v1/sessions/${n.id}-0`, 401, () => stopping || !alive(proxy))));
if (stopping) await new Promise(() => {});
if (routed.includes(false)) await stopAll(1);

const state = {
  proxy: { pid: proxy.pid, port: proxyPort },
  nodes: nodes.map((n) => ({ id: n.id, pid: n.child.pid, port: n.port, dataDir: n.dataDir })),
};
if (statePath) {
  writeFileSync(`${statePath}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(`${statePath}.tmp`, statePath);
}
process.stdout.write(
  `iommud cluster: http://${probeHost}:${proxyPort} (haproxy pid ${proxy.pid})\n` +
    nodes.map((n) => `  ${n.id}: 127.0.0.1:${n.port} pid ${n.child.pid}${n.dataDir ? ` data ${n.dataDir}` : ''}\n`).join('') +
    'Ctrl-C stops everything.\n',
);
