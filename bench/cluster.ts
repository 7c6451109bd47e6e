/**
 * cluster-map-throughput: the same map/unmap load (autocannon, as bench/http.ts) through HAProxy to 1 node and to
 * 3 nodes, both started by `npm run cluster`; plus one node without the proxy (requests/s per core: a node is one
 * process on one core) and a node's memory per session, the figures a deployment is sized from. On a machine with
 * fewer cores than nodes + proxy + load generator the 3-node figure is bound by the cores, not by iommud.
 */
import autocannon from 'autocannon';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchResult } from './report.js';

const DURATION = Number(process.env.BENCH_SECONDS ?? 5);
const SESSIONS = 12;
const CONNECTIONS = 48;

interface State {
  proxy: { pid: number; port: number };
  nodes: Array<{ id: string; pid: number; port: number }>;
}

async function startCluster(nodes: number): Promise<{ proc: ChildProcess; state: State; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'iommud-bench-cluster-'));
  const statePath = join(dir, 'state.json');
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/cluster.ts', '--nodes', String(nodes), '--port', '0', '--state', statePath], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, LOG_LEVEL: 'warn' },
  });
  while (!existsSync(statePath)) {
    if (proc.exitCode !== null) throw new Error(`cluster exited ${proc.exitCode}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { proc, state: JSON.parse(readFileSync(statePath, 'utf8')) as State, dir };
}

async function stopCluster(c: { proc: ChildProcess; dir: string }): Promise<void> {
  const exit = new Promise((r) => c.proc.once('exit', r));
  c.proc.kill('SIGTERM');
  await exit;
  rmSync(c.dir, { recursive: true, force: true });
}

async function post(url: string, body: unknown, token?: string): Promise<any> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  return res.json();
}

/** SESSIONS sessions (created through `base`, so spread by the proxy), each with a domain. */
async function sessions(base: string): Promise<Array<{ sid: string; token: string; did: string }>> {
  const out = [];
  for (let i = 0; i < SESSIONS; i++) {
    const s = await post(`${base}/v1/sessions`, { name: `bench${i}`, persist: false });
    const d = await post(`${base}/v1/sessions/${s.id}/domains`, {}, s.token);
    out.push({ sid: s.id as string, token: s.token as string, did: d.id as string });
  }
  return out;
}

/** CPU seconds a process has used (user + system), from /proc. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

interface Load {
  rps: number;
  /** Requests per CPU second of the node processes: what one core of a node serves, however loaded the machine. */
  perNodeCore: number;
  /** Requests per CPU second of HAProxy (0 without the proxy). */
  perProxyCore: number;
}

/** The load, after a one-second warm-up (JIT), with the CPU time of the nodes and the proxy measured around it. */
async function measured(url: string, targets: Array<{ sid: string; token: string; did: string }>, nodePids: number[], proxyPid?: number): Promise<Load> {
  await mapUnmap(url, targets, 1);
  const cpu = () => ({ nodes: nodePids.reduce((a, p) => a + cpuSeconds(p), 0), proxy: proxyPid ? cpuSeconds(proxyPid) : 0 });
  const c0 = cpu();
  const r = await mapUnmap(url, targets, DURATION);
  const c1 = cpu();
  return { rps: r.rps, perNodeCore: r.total / (c1.nodes - c0.nodes), perProxyCore: proxyPid ? r.total / (c1.proxy - c0.proxy) : 0 };
}

/** Connections ever made: each gets its own page, so a run cut between a map and its unmap leaves no clash. */
let next = 0;

/** Alternating map/unmap of one 4K page per connection, the connections spread evenly over the sessions. */
async function mapUnmap(url: string, targets: Array<{ sid: string; token: string; did: string }>, duration: number): Promise<{ rps: number; total: number }> {
  type Ctx = { t?: { sid: string; token: string; did: string }; map?: string; unmap?: string };
  const setup = (ctx: Ctx) => {
    if (ctx.t) return ctx;
    const n = next++;
    ctx.t = targets[n % targets.length]!;
    const iova = 0x1000 * (1 + Math.floor(n / targets.length));
    ctx.map = JSON.stringify({ iova, paddr: '0x40000000', size: 4096, prot: ['read', 'write'] });
    ctx.unmap = JSON.stringify({ iova, size: 4096 });
    return ctx;
  };
  const req = (op: 'map' | 'unmap') => ({
    method: 'POST' as const,
    setupRequest: (r: any, context: unknown) => {
      const c = setup(context as Ctx);
      return { ...r, path: `/v1/sessions/${c.t!.sid}/domains/${c.t!.did}/${op}`, headers: { authorization: `Bearer ${c.t!.token}`, 'content-type': 'application/json' }, body: op === 'map' ? c.map : c.unmap };
    },
  });
  const r = await autocannon({ url, connections: CONNECTIONS, pipelining: 1, duration, requests: [req('map'), req('unmap')] });
  if (r.non2xx + r.errors > 0) throw new Error(`map/unmap load on ${url}: ${r.non2xx} non-2xx, ${r.errors} errors, ${JSON.stringify(r.statusCodeStats)}`);
  return { rps: r.requests.average, total: r.requests.total };
}

const rssKiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

export async function clusterBenchmarks(): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const cores = cpus().length;

  const one = await startCluster(1);
  let oneNode: Load;
  let direct: Load;
  try {
    const proxyUrl = `http://127.0.0.1:${one.state.proxy.port}`;
    const node = one.state.nodes[0]!;
    const nodeUrl = `http://127.0.0.1:${node.port}`;
    oneNode = await measured(proxyUrl, await sessions(proxyUrl), [node.pid], one.state.proxy.pid);
    direct = await measured(nodeUrl, await sessions(nodeUrl), [node.pid]);
    // Memory per session on a node (msm8x60, one domain with a 1 MiB section mapped): RSS over 40 more sessions.
    const before = rssKiB(node.pid);
    for (let i = 0; i < 40; i++) {
      const s = await post(`${nodeUrl}/v1/sessions`, { profile: 'msm8x60', persist: false });
      const d = await post(`${nodeUrl}/v1/sessions/${s.id}/domains`, {}, s.token);
      await post(`${nodeUrl}/v1/sessions/${s.id}/domains/${d.id}/map`, { iova: '0x10000000', paddr: '0x40000000', size: '0x100000', prot: ['read', 'write'] }, s.token);
    }
    out.push({ name: 'cluster-session-rss', value: (rssKiB(node.pid) - before) / 1024 / 40, unit: 'MiB', note: 'resident memory per msm8x60 session on a node (one domain, a 1 MiB section mapped); quota 64 sessions per node' });
  } finally {
    await stopCluster(one);
  }
  out.push({ name: 'cluster-node-direct', value: direct.rps, unit: 'req/s', note: `one node without the proxy; ${SESSIONS} sessions, ${CONNECTIONS} connections` });
  out.push({ name: 'cluster-node-req-per-core', value: direct.perNodeCore, unit: 'req/cpu-s', note: 'map/unmap requests per CPU second of a node (without the proxy): a core\'s worth of node' });
  out.push({ name: 'cluster-map-throughput-1node', value: oneNode.rps, unit: 'req/s', baseline: direct.rps, ratio: oneNode.rps / direct.rps, note: 'the same load through HAProxy to one node; baseline: without the proxy' });

  const three = await startCluster(3);
  try {
    const proxyUrl = `http://127.0.0.1:${three.state.proxy.port}`;
    const r = await measured(proxyUrl, await sessions(proxyUrl), three.state.nodes.map((n) => n.pid), three.state.proxy.pid);
    out.push({
      name: 'cluster-map-throughput',
      value: r.rps,
      unit: 'req/s',
      baseline: oneNode.rps,
      ratio: r.rps / oneNode.rps,
      note: `3 nodes vs 1 behind HAProxy, same load; ${cores} cores shared by nodes, proxy and load generator${cores < 5 ? ' (bound by the cores)' : ''}`,
    });
    out.push({ name: 'cluster-node-req-per-core-3', value: r.perNodeCore, unit: 'req/cpu-s', note: 'the same per-core figure for the 3 nodes behind the proxy' });
    out.push({ name: 'cluster-proxy-req-per-core', value: r.perProxyCore, unit: 'req/cpu-s', note: 'requests per CPU second of HAProxy' });
  } finally {
    await stopCluster(three);
  }
  return out;
}
