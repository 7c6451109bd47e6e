/**
 * The cluster as `npm run cluster` starts it: 3 nodes and the system's HAProxy on loopback, driven through the proxy
 * with the SDK alone. Without haproxy this is skipped locally; CI (.ci/run) installs it and sets
 * IOMMUD_REQUIRE_HAPROXY=1, which turns a missing haproxy into a failure.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StreamItem } from '../../src/api/stream.js';
import { IommudClient, IommudError, type EventSubscription, type IommudEvent, type SessionClient, type TranslateStream } from '../../src/client/index.js';
import { findHaproxy, nodeCommand } from '../../src/cluster/launch.js';
import { nodeOfSession } from '../../src/cluster/node.js';

const HAPROXY = findHaproxy();
const REQUIRED = process.env.IOMMUD_REQUIRE_HAPROXY === '1';
if (!HAPROXY && !REQUIRED) console.warn('test/cluster/cluster.test.ts: skipped: no haproxy (apt-get install haproxy)');

interface State {
  proxy: { pid: number; port: number };
  nodes: Array<{ id: string; pid: number; port: number; dataDir: string | null }>;
}

/** The cluster script as `npm run cluster` runs it (tsx's loader in this process's node, no wrapper). */
function cluster(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', 'src/cli/cluster.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'warn', ...env } });
}

function output(child: ChildProcess): { text: string } {
  const out = { text: '' };
  child.stdout?.on('data', (b) => (out.text += b));
  child.stderr?.on('data', (b) => (out.text += b));
  return out;
}

const exited = (child: ChildProcess) => new Promise<number | null>((r) => (child.exitCode !== null ? r(child.exitCode) : child.once('exit', (code) => r(code))));

async function poll<T>(what: string, f: () => Promise<T | undefined>, ms = 90_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** True once nothing listens on the port (the killed node's sockets are gone). */
const refused = (port: number) =>
  new Promise<boolean>((resolve) => {
    const sock = connect(port, '127.0.0.1');
    sock.once('connect', () => (sock.destroy(), resolve(false)));
    sock.once('error', () => resolve(true));
  });

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

interface Rig {
  i: number;
  s: SessionClient;
  node: string;
  did: string;
  events: IommudEvent[];
  sub: EventSubscription;
  stream: TranslateStream;
  paddr: number;
}

const PAGE = 0x10000;
const IOVA = 0x10000000;

describe.runIf(HAPROXY !== null || REQUIRED)('cluster: 3 nodes behind HAProxy, through the proxy with the SDK', () => {
  let dir: string;
  let proc: ChildProcess;
  let log: { text: string };
  let state: State;
  let client: IommudClient;
  let restarted: ChildProcess | undefined;
  const rigs: Rig[] = [];
  const before = new Map<string, unknown>();

  /** What must survive a restart: revision, tables, mappings, domains (TLB counters start empty by design). */
  async function durableState(r: Rig) {
    const { revision, domains, lastSeq } = await r.s.get();
    return { revision, domains, lastSeq, pagetable: await r.s.pagetable(r.did), mappings: await r.s.mappings(r.did), domain: await r.s.domain(r.did) };
  }

  beforeAll(async () => {
    if (!HAPROXY) throw new Error('IOMMUD_REQUIRE_HAPROXY=1 but haproxy is not installed (.ci/run installs it: apt-get install haproxy)');
    dir = mkdtempSync(join(tmpdir(), 'iommud-cluster-test-'));
    const statePath = join(dir, 'state.json');
    proc = cluster(['--nodes', '3', '--port', '0', '--data-dir', join(dir, 'data'), '--state', statePath]);
    log = output(proc);
    state = await poll('the state file', async () => {
      if (proc.exitCode !== null) throw new Error(`cluster exited ${proc.exitCode}: ${log.text}`);
      return existsSync(statePath) ? (JSON.parse(readFileSync(statePath, 'utf8')) as State) : undefined;
    }).catch((e) => {
      throw new Error(`${(e as Error).message}\n${log.text}`);
    });
    client = new IommudClient({ url: `http://127.0.0.1:${state.proxy.port}` });
  }, 180_000);

  afterAll(async () => {
    for (const r of rigs) {
      r.sub.close();
      r.stream.close();
    }
    if (restarted && restarted.exitCode === null) {
      restarted.kill('SIGTERM');
      await exited(restarted);
    }
    if (proc && proc.exitCode === null) {
      proc.kill('SIGKILL');
      for (const p of [state?.proxy, ...(state?.nodes ?? [])]) if (p && alive(p.pid)) process.kill(p.pid, 'SIGKILL');
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('the state file names the proxy and nodes n1..n3 with their real pids, ports and data dirs', async () => {
    expect(state.nodes.map((n) => n.id)).toEqual(['n1', 'n2', 'n3']);
    expect(state.nodes.map((n) => n.dataDir)).toEqual(['n1', 'n2', 'n3'].map((n) => join(dir, 'data', n)));
    for (const n of state.nodes) {
      // The pid is the daemon itself: its command line is the node, not a wrapper around it.
      expect(readFileSync(`/proc/${n.pid}/cmdline`, 'utf8').split('\0')).toEqual(expect.arrayContaining(['--node-id', n.id, '--port', String(n.port)]));
      const health = (await (await fetch(`http://127.0.0.1:${n.port}/health`)).json()) as { node: string; sessions: number };
      expect(health).toMatchObject({ status: 'ok', node: n.id, sessions: 0 });
    }
    expect(readFileSync(`/proc/${state.proxy.pid}/cmdline`, 'utf8').split('\0')[0]).toBe(HAPROXY);
  });

  it('a prefix that names no node is 401 UNAUTHORIZED from the proxy, exactly as a node answers an unknown session', async () => {
    const proxy = `http://127.0.0.1:${state.proxy.port}`;
    const n1 = `http://127.0.0.1:${state.nodes[0]!.port}`;
    for (const headers of [{}, { authorization: 'Bearer nope' }] as Array<Record<string, string>>) {
      const viaProxy = await fetch(`${proxy}/v1/sessions/n9-1a2b/smmus`, { headers });
      const fromNode = await fetch(`${n1}/v1/sessions/n1-1a2b/smmus`, { headers });
      expect(viaProxy.status).toBe(401);
      expect(viaProxy.headers.get('content-type')).toBe('application/json');
      expect(await viaProxy.json()).toEqual(await fromNode.json());
    }
    // WebSocket upgrades are routed the same way.
    const err = await client.session('zz-1', 'nope').stream('dev0').then(() => null, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'UNAUTHORIZED', status: 401 });
    // Routes without a session id reach a node; the dashboard too (one origin).
    expect(['n1', 'n2', 'n3']).toContain((await client.health()).node);
    expect((await fetch(`${proxy}/`)).status).toBe(200);
  });

  it('30 sessions created through the proxy are spread 10/10/10 over the nodes', async () => {
    const created: SessionClient[] = [];
    for (let i = 0; i < 30; i++) created.push(await client.createSession({ profile: 'tiny', name: `rig${i}` }));
    const count: Record<string, number> = {};
    for (const s of created) count[nodeOfSession(s.id)!] = (count[nodeOfSession(s.id)!] ?? 0) + 1;
    expect(count).toEqual({ n1: 10, n2: 10, n3: 10 });
    for (const s of created) expect(s.id).toMatch(/^n[123]-[0-9a-f]+$/);
    for (const n of state.nodes) expect(((await (await fetch(`http://127.0.0.1:${n.port}/health`)).json()) as { sessions: number }).sessions).toBe(10);
    await Promise.all(
      created.map(async (s, i) => {
        const d = await s.allocDomain();
        await s.attach(d.id, 'dev0');
        const events: IommudEvent[] = [];
        const sub = s.subscribe({ types: ['map', 'fault'], onEvent: (e) => events.push(e) });
        await sub.ready();
        const stream = await s.stream('dev0');
        rigs.push({ i, s, node: nodeOfSession(s.id)!, did: d.id, events, sub, stream, paddr: 0x80000000 + i * PAGE });
      }),
    );
    rigs.sort((a, b) => a.i - b.i);
  }, 120_000);

  it('REST, the events socket and the binary stream of every session work through the proxy', async () => {
    await Promise.all(
      rigs.map(async (r) => {
        const m = await r.s.map(r.did, { iova: IOVA, paddr: r.paddr, size: PAGE, prot: ['read', 'write'] });
        expect(m.pages['64K']).toBe(1);
        const items = await r.stream.translate('read', [IOVA + 0x10, 0x20000000]);
        expect(items[0]).toEqual<StreamItem>({ status: 'ok', tlb: 'miss', stale: false, unbacked: false, paddr: r.paddr + 0x10 });
        expect(items[1]!.status).toBe('translation');
        await poll('map and fault events', async () => (r.events.length >= 2 ? true : undefined), 30_000);
        expect(r.events.map((e) => e.type)).toEqual(['map', 'fault']);
        expect(r.events[0]).toMatchObject({ domain: r.did, iova: '0x10000000', paddr: `0x${r.paddr.toString(16)}`, size: PAGE });
        expect(r.events[1]).toMatchObject({ device: 'dev0', iova: '0x20000000', kind: 'translation' });
        before.set(r.s.id, await durableState(r));
      }),
    );
  }, 120_000);

  it('iommuctl works unchanged against the proxy URL', async () => {
    const r = rigs.find((x) => x.node === 'n3')!;
    const token = (await r.s.mintToken('observer', 'ctl')).token;
    const out = execFileSync(process.execPath, ['--import', 'tsx', 'src/cli/iommuctl.ts', '--json', 'session', 'show'], {
      env: { ...process.env, IOMMUD_URL: `http://127.0.0.1:${state.proxy.port}`, IOMMUD_SESSION: r.s.id, IOMMUD_TOKEN: token },
    }).toString();
    expect(JSON.parse(out)).toMatchObject({ id: r.s.id, name: `rig${r.i}`, domains: 1 });
  }, 60_000);

  it('kill -9 of n2: its sessions answer 503 UNAVAILABLE at once (details.node, Retry-After); n1 and n3 keep working', async () => {
    const n2 = state.nodes.find((n) => n.id === 'n2')!;
    process.kill(n2.pid, 'SIGKILL');
    await poll('n2 to be gone', async () => ((await refused(n2.port)) ? true : undefined), 30_000);

    // The first request after the death is already answered UNAVAILABLE by the proxy: no wait for health checks.
    const dead = rigs.filter((r) => r.node === 'n2');
    const res = await fetch(`http://127.0.0.1:${state.proxy.port}/v1/sessions/${dead[0]!.s.id}`, { headers: { authorization: 'Bearer x' } });
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('retry-after')).toBe('2');
    expect(await res.json()).toEqual({ error: { code: 'UNAVAILABLE', message: 'node n2 is down: its sessions are unavailable until it is back', details: { node: 'n2' } } });
    for (const r of dead) {
      const err = await r.s.get().then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(IommudError);
      expect(err).toMatchObject({ code: 'UNAVAILABLE', status: 503, details: { node: 'n2' } });
      await expect(r.s.map(r.did, { iova: IOVA + PAGE, paddr: r.paddr, size: PAGE, prot: ['read'] })).rejects.toMatchObject({ code: 'UNAVAILABLE', status: 503 });
      await expect(r.s.stream('dev0')).rejects.toMatchObject({ code: 'UNAVAILABLE', status: 503, details: { node: 'n2' } });
    }

    const live = rigs.filter((r) => r.node !== 'n2');
    expect(live).toHaveLength(20);
    await Promise.all(
      live.map(async (r) => {
        expect((await r.s.map(r.did, { iova: IOVA + PAGE, paddr: r.paddr, size: PAGE, prot: ['read'] })).pages['64K']).toBe(1);
        expect((await r.stream.translate('read', [IOVA + PAGE + 4]))[0]).toMatchObject({ status: 'ok', paddr: r.paddr + 4 });
        await poll('the second map event', async () => (r.events.length >= 3 ? true : undefined), 30_000);
        expect(r.events[2]).toMatchObject({ type: 'map', iova: '0x10010000' });
      }),
    );
    // New sessions go to the nodes that are up.
    for (let i = 0; i < 4; i++) {
      const s = await client.createSession({ profile: 'tiny', persist: false });
      expect(['n1', 'n3']).toContain(nodeOfSession(s.id));
      await s.delete();
    }
  }, 120_000);

  it('n2 restarted on its data dir: its sessions are back with the same ids and state; the SDK resumes its events', async () => {
    const n2 = state.nodes.find((n) => n.id === 'n2')!;
    const { command, args } = nodeCommand({ id: 'n2', port: n2.port, dataDir: n2.dataDir });
    restarted = spawn(command, args, { stdio: 'ignore', env: { ...process.env, LOG_LEVEL: 'warn' } });
    const dead = rigs.filter((r) => r.node === 'n2');
    await poll('n2 back behind the proxy', () => dead[0]!.s.get());
    for (const r of dead) expect(await durableState(r)).toEqual(before.get(r.s.id));
    expect(((await (await fetch(`http://127.0.0.1:${n2.port}/health`)).json()) as { node: string; sessions: number })).toMatchObject({ node: 'n2', sessions: 10 });

    await Promise.all(
      dead.map(async (r) => {
        // The subscription opened before the kill reconnects by itself and resumes after its last seq.
        await r.s.map(r.did, { iova: IOVA + PAGE, paddr: r.paddr, size: PAGE, prot: ['read'] });
        await poll('the map event on the resumed subscription', async () => (r.events.length >= 3 ? true : undefined), 30_000);
        expect(r.events.map((e) => e.type)).toEqual(['map', 'fault', 'map']);
        r.stream.close();
        r.stream = await r.s.stream('dev0');
        // The tables are the journaled ones.
        expect((await r.stream.translate('read', [IOVA + 0x10]))[0]).toMatchObject({ status: 'ok', stale: false, paddr: r.paddr + 0x10 });
      }),
    );
  }, 180_000);

  it('SIGTERM to the cluster script stops the proxy and every node it started', async () => {
    proc.kill('SIGTERM');
    expect(await exited(proc)).toBe(0);
    for (const p of [state.proxy, ...state.nodes]) expect(alive(p.pid)).toBe(false);
  }, 60_000);
});

describe('cluster script: refusals', () => {
  it('without haproxy it says how to install it and exits 2', async () => {
    const p = cluster(['--nodes', '2', '--port', '0'], { IOMMUD_HAPROXY: '/nonexistent/haproxy' });
    const out = output(p);
    expect(await exited(p)).toBe(2);
    expect(out.text).toContain('iommud cluster: haproxy not found; install it: apt-get install haproxy');
  }, 60_000);

  it('a bad --nodes is a usage error (exit 2)', async () => {
    const p = cluster(['--nodes', '0', '--port', '0']);
    const out = output(p);
    expect(await exited(p)).toBe(2);
    expect(out.text).toContain('--nodes takes 1 to 64, not 0');
  }, 60_000);
});
