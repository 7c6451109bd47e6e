/**
 * CPU per translation of the binary stream's request path, in process, without the socket: each frame goes through
 * what the WebSocket handler (src/server/stream.ts) does with it (decodeRequest, Session.run of the stream command,
 * the bus's endBurst). `npx tsx scripts/stream-ops.ts [random|warm] [--root DIR]... [--rounds R] [--frames F]`.
 * random is ws-stream-translate-random's shape (tiny profile, TLB 128, one 64 MiB mapping of 4K pages, 16 batches
 * of 4096 uniform random iovas cycled, bench/stream-load.ts); warm is every iova in one mapped page. Each round
 * is F frames after a warm-up; a line gives the min and median over rounds of CPU ns per translation. Several
 * --root checkouts (an A/B against a base worktree) load into one process and take rounds in turn, so a machine
 * busy with other work slows each alike; a tsc build (--root DIR/dist) runs as JavaScript with the source's line
 * numbers in profiles. Run under `node --import tsx --cpu-prof` for a profile.
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { RANDOM_BASE, RANDOM_SPAN, randomBatches } from '../bench/stream-load.js';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { root: { type: 'string', multiple: true }, rounds: { type: 'string', default: '7' }, frames: { type: 'string', default: '300' } } });
const roots = values.root ?? [new URL('..', import.meta.url).pathname];
const FRAMES = Number(values.frames);
const actor = Object.freeze({ role: 'operator' as const, label: null });

type Stream = typeof import('../src/api/stream.js');
type Commands = typeof import('../src/session/commands.js');

/** One checkout's app with the benchmark's session, and the frames the handler would get. */
async function contender(root: string, warm: boolean) {
  const ext = existsSync(`${root}/src/server/app.ts`) ? 'ts' : 'js';
  const { build } = (await import(`${root}/src/server/app.${ext}`)) as typeof import('../src/server/app.js');
  const stream = (await import(`${root}/src/api/stream.${ext}`)) as Stream;
  const { encodeItems, STREAM_MAX_ITEMS } = (await import(`${root}/src/session/commands.${ext}`)) as Commands;
  const app = await build({ dataDir: null });
  const s = (await app.inject({ method: 'POST', url: '/v1/sessions', payload: warm ? { profile: 'tiny' } : { profile: 'tiny', tlbEntries: 128 } })).json();
  const auth = { authorization: `Bearer ${s.token}` };
  const did = (await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains`, headers: auth, payload: { pgsizes: [4096] } })).json().id;
  await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains/${did}/attach`, headers: auth, payload: { device: 'dev0' } });
  const m = await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/domains/${did}/map`, headers: auth, payload: { iova: warm ? 0x40000000 : RANDOM_BASE, paddr: '0x80000000', size: warm ? 4096 : RANDOM_SPAN, prot: ['read', 'write'] } });
  if (m.statusCode !== 200) throw new Error(m.body);
  const sess = app.registry.sessions.get(s.id)!;
  const frames = batches(stream, warm);
  /** What the handler does per binary message (minus the socket's send): n frames; returns translations done. */
  const run = (from: number, n: number, check = false): number => {
    let items = 0;
    for (let k = 0; k < n; k++) {
      const r = stream.decodeRequest(Buffer.from(frames[(from + k) % frames.length]!), STREAM_MAX_ITEMS);
      const { result } = sess.run(actor, { op: 'stream', device: 'dev0', sop: r.op, priv: r.priv, mid: r.mid, iovas: encodeItems(r.iovas) });
      sess.bus.endBurst();
      const reply = result as Uint8Array;
      new DataView(reply.buffer, reply.byteOffset).setUint32(4, r.id, true);
      // Every item of the workload translates (a fault would measure the fault path instead).
      if (check && stream.decodeReply(reply).items.some((x) => x.status !== 'ok')) throw new Error('a translation failed');
      items += r.iovas.length;
    }
    return items;
  };
  run(0, frames.length, true);
  return { root, app, run, ns: [] as number[] };
}

function batches(stream: Stream, warm: boolean): Uint8Array[] {
  if (warm) {
    const w = new Uint32Array(4096);
    for (let i = 0; i < w.length; i++) w[i] = 0x40000000 + (i & 0xfff);
    return [stream.encodeRequest({ id: 1, op: stream.OP_TRANSLATE_READ, priv: false, mid: 0xff, iovas: w })];
  }
  return randomBatches().map((iovas, k) => stream.encodeRequest({ id: k, op: stream.OP_TRANSLATE_READ, priv: false, mid: 0xff, iovas }));
}

for (const warm of [false, true]) {
  const name = warm ? 'warm' : 'random';
  if (positionals[0] && positionals[0] !== name) continue;
  const cs = [];
  for (const root of roots) cs.push(await contender(root, warm));
  for (const c of cs) c.run(0, FRAMES);
  for (let r = 0; r < Number(values.rounds); r++) {
    for (const c of cs) {
      const t0 = process.cpuUsage();
      const items = c.run(r * FRAMES, FRAMES);
      const t = process.cpuUsage(t0);
      c.ns.push(((t.user + t.system) * 1000) / items);
    }
  }
  for (const c of cs) {
    c.ns.sort((a, b) => a - b);
    console.log(`${name} ${c.root}: CPU ns per translation min ${c.ns[0]!.toFixed(1)}, median ${c.ns[c.ns.length >> 1]!.toFixed(1)} (${c.ns.length} rounds of ${FRAMES} frames × 4096)`);
    await c.app.close();
  }
}
