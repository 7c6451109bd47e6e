// npm run bench [-- --json] [-- --only core|cache|families|persist|http|cluster]
import { parseArgs } from 'node:util';
import { cacheBenchmarks, coreBenchmarks, dmaBenchmarks, familyBenchmarks, restoreBenchmark } from './core.js';
import { report, type BenchResult } from './report.js';

const { values } = parseArgs({ options: { json: { type: 'boolean', default: false }, only: { type: 'string' } } });
const results: BenchResult[] = [];
if (!values.only || values.only === 'core') results.push(...coreBenchmarks(), ...dmaBenchmarks());
if (!values.only || values.only === 'core' || values.only === 'cache') results.push(...cacheBenchmarks());
if (!values.only || values.only === 'core' || values.only === 'families') results.push(...familyBenchmarks());
if (!values.only || values.only === 'persist') results.push(...(await restoreBenchmark()));
if (!values.only || values.only === 'http') {
  const { httpBenchmarks } = await import('./http.js');
  results.push(...(await httpBenchmarks()));
}
if (!values.only || values.only === 'cluster') {
  const { clusterBenchmarks } = await import('./cluster.js');
  results.push(...(await clusterBenchmarks()));
}
report(results, values.json);
