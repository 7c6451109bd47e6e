/**
 * The top frames of CPU profiles by self time: `npx tsx scripts/profile-top.ts DIR|FILE... [--top N]`.
 * Profiles come from `BENCH_PROFILE=DIR npm run bench -- --only http --runs 1` (one per HTTP benchmark) or from
 * `node --cpu-prof`. Idle time is left out of the percentages: they are shares of the time the process was busy.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '12' } } });
const files = positionals.flatMap((p) => (statSync(p).isDirectory() ? readdirSync(p).filter((f) => f.endsWith('.cpuprofile')).sort().map((f) => join(p, f)) : [p]));
if (files.length === 0) {
  process.stderr.write('usage: profile-top.ts DIR|FILE.cpuprofile... [--top N]\n');
  process.exit(2);
}

/** A frame as `function file:line`, the file relative to the repository or node_modules. */
function frameName(cf: ProfileNode['callFrame']): string {
  const url = cf.url.replace(/^file:\/\//, '');
  const nm = url.lastIndexOf('node_modules/');
  const file = nm >= 0 ? url.slice(nm + 'node_modules/'.length) : url.includes('/src/') ? url.slice(url.indexOf('/src/') + 1) : url.split('/').slice(-2).join('/');
  return `${cf.functionName || '(anonymous)'} ${file}${file ? `:${cf.lineNumber + 1}` : ''}`;
}

for (const f of files) {
  const p = JSON.parse(readFileSync(f, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let busy = 0;
  p.samples.forEach((id, i) => {
    const name = frameName(byId.get(id)!.callFrame);
    if (name.startsWith('(idle)')) return;
    const dt = p.timeDeltas[i] ?? 0;
    busy += dt;
    self.set(name, (self.get(name) ?? 0) + dt);
  });
  process.stdout.write(`${basename(f, '.cpuprofile')}: ${(busy / 1e6).toFixed(2)} s busy\n`);
  for (const [name, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) {
    process.stdout.write(`  ${((100 * us) / busy).toFixed(1).padStart(5)}%  ${name}\n`);
  }
}
