// npm run bench [-- --json] [-- --only core|cache|families|persist|sessions|http|cluster] [-- --quick] [-- --runs N]
// Every figure is the median of --runs runs (default 3) with the spread (min–max) beside it. --quick (or a small
// BENCH_SECONDS) makes a smoke run: 1-second HTTP loads and smaller populations, same figures.
import { execSync } from 'node:child_process';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { pinning } from './pin.js';
import { aggregate, report, type BenchResult } from './report.js';

const { values } = parseArgs({
  options: { json: { type: 'boolean', default: false }, only: { type: 'string' }, quick: { type: 'boolean', default: false }, runs: { type: 'string', default: '3' } },
});
if (values.quick) {
  process.env.BENCH_SECONDS ??= '1';
  process.env.BENCH_QUICK = '1';
}
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a whole number of at least 1, not ${values.runs}`);
const pin = pinning();
const load0 = loadavg();

/** A group measures once per call; `setup` (when given) runs once before its runs and is shared by them. */
const groups: Array<[string, () => Promise<() => Promise<BenchResult[]>>]> = [
  ['core', async () => { const { coreBenchmarks, dmaBenchmarks } = await import('./core.js'); return async () => [...coreBenchmarks(), ...dmaBenchmarks()]; }],
  ['cache', async () => { const { cacheBenchmarks } = await import('./core.js'); return async () => cacheBenchmarks(); }],
  ['families', async () => { const { familyBenchmarks } = await import('./core.js'); return async () => familyBenchmarks(); }],
  ['persist', async () => { const { restoreBenchmark } = await import('./core.js'); return restoreBenchmark(); }],
  ['sessions', async () => { const { sessionBenchmarks } = await import('./sessions.js'); return sessionBenchmarks; }],
  ['http', async () => { const { httpBenchmarks } = await import('./http.js'); return httpBenchmarks; }],
  ['cluster', async () => { const { clusterBenchmarks } = await import('./cluster.js'); return clusterBenchmarks; }],
];

const perRun: BenchResult[][] = Array.from({ length: runs }, () => []);
const cleanups: Array<() => Promise<void>> = [];
for (const [name, prepare] of groups) {
  // --only core includes the cache and families groups, as before the groups were split.
  if (values.only && values.only !== name && !(values.only === 'core' && (name === 'cache' || name === 'families'))) continue;
  const measure = await prepare();
  for (let r = 0; r < runs; r++) {
    process.stderr.write(`bench: ${name} run ${r + 1}/${runs}\n`);
    perRun[r]!.push(...(await measure()));
  }
  const done = (measure as { cleanup?: () => Promise<void> }).cleanup;
  if (done) cleanups.push(done);
}
for (const c of cleanups) await c();

let commit = 'unknown';
try {
  commit = execSync('git rev-parse --short HEAD', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
} catch {
  // not a git checkout
}
const c = cpus();
const meta = {
  machine: `${c[0]?.model.trim() ?? 'unknown CPU'} × ${c.length}, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${release()}, Node ${process.version}`,
  pinning: pin.note,
  pinned: pin.pinned,
  runs,
  quick: values.quick,
  seconds: Number(process.env.BENCH_SECONDS ?? 5),
  loadavg: { start: load0.map((x) => Number(x.toFixed(2))), end: loadavg().map((x) => Number(x.toFixed(2))) },
  commit,
  date: new Date().toISOString(),
};
report(aggregate(perRun), values.json, meta);
