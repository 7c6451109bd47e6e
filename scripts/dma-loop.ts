/**
 * The DMA benchmarks' loops (bench/core.ts dmaBenchmarks) in process, for profiles and quick A/B:
 * `npx tsx scripts/dma-loop.ts [reuse|noreuse|both] [--root DIR] [--rounds R]`. Each round is 20 × 1,024 buffers
 * (noreuse) or 50,000 pairs (reuse); the line gives min and median wall and CPU ns per map+unmap pair over the rounds. --root
 * measures another checkout (an A/B against a base worktree); run it under `node --import tsx --cpu-prof` for a
 * profile.
 */
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { root: { type: 'string' }, rounds: { type: 'string', default: '9' } } });
const root = values.root ?? new URL('..', import.meta.url).pathname;
const { Session } = (await import(`${root}/src/session/session.ts`)) as typeof import('../src/session/session.js');
const { MSM8X60 } = (await import(`${root}/src/hw/profile.ts`)) as typeof import('../src/hw/profile.js');
const mode = positionals[0] ?? 'both';
const ROUNDS = Number(values.rounds);

function fresh() {
  const s = new Session({ id: 'bench', name: 'bench', profile: MSM8X60, tlbEntries: 128 });
  s.dma.map('vfe_imgwr', 0x40000000, 0x1000, 'to-device');
  return s;
}

function reuse(): (k: number) => void {
  const s = fresh();
  return (k) => {
    for (let i = 0; i < k; i++) {
      const m = s.dma.map('vfe_imgwr', 0x40100000, 8 * 0x1000, 'bidirectional');
      s.dma.unmap('vfe_imgwr', m.dmaAddr, 8 * 0x1000, 'bidirectional');
    }
  };
}

function noreuse(): (k: number) => void {
  const s = fresh();
  const LIVE = 1024;
  const addrs = new Array<number>(LIVE);
  return (k) => {
    for (let i = 0; i < k; i += LIVE) {
      for (let j = 0; j < LIVE; j++) addrs[j] = s.dma.map('vfe_imgwr', 0x40100000 + j * 0x8000, 8 * 0x1000, 'bidirectional').dmaAddr;
      for (let j = 0; j < LIVE; j++) s.dma.unmap('vfe_imgwr', addrs[j]!, 8 * 0x1000, 'bidirectional');
    }
  };
}

for (const [name, make, n] of [['reuse', reuse, 50_000], ['noreuse', noreuse, 20 * 1024]] as const) {
  if (mode !== 'both' && mode !== name) continue;
  const f = make();
  f(n);
  const ns: number[] = [];
  const cpu: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    f(n);
    ns.push(Number(process.hrtime.bigint() - t0) / n);
    const c = process.cpuUsage(c0);
    cpu.push(((c.user + c.system) * 1000) / n);
  }
  ns.sort((a, b) => a - b);
  cpu.sort((a, b) => a - b);
  const mid = ROUNDS >> 1;
  console.log(`${name}: wall min ${ns[0]!.toFixed(0)} median ${ns[mid]!.toFixed(0)}, cpu min ${cpu[0]!.toFixed(0)} median ${cpu[mid]!.toFixed(0)} ns per pair (${ROUNDS} rounds)`);
}
