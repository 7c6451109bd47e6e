/**
 * Renders `npm run bench -- --json` output as the README's benchmark table (figures are never typed by hand):
 *   npm run bench -- --json > bench.jsonl && npx tsx scripts/bench-table.ts bench.jsonl [--write README.md]
 * With --write, replaces what stands between the `<!-- bench-table -->` and `<!-- /bench-table -->` markers.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { fmt, judge, type Figure } from '../bench/report.js';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { write: { type: 'string' } } });
if (positionals.length !== 1) {
  process.stderr.write('usage: bench-table.ts BENCH.jsonl [--write README.md]\n');
  process.exit(2);
}
const lines = readFileSync(positionals[0]!, 'utf8').split('\n').filter((l) => l.trim().startsWith('{'));
const parsed = lines.map((l) => JSON.parse(l) as Figure & { meta?: Record<string, any> });
const meta = parsed.find((x) => x.meta)?.meta;
// Floors are judged again here, so a table always says what the floors of this checkout say of the figures.
const figures = parsed.filter((x) => !x.meta).map(judge);
if (!meta || figures.length === 0) throw new Error(`${positionals[0]} holds no bench --json output`);

const val = (v: number, unit: string) => (unit === 'bytes' ? `${(v / 1024).toFixed(1)} KiB` : unit === 'ns' ? `${(v / 1000).toFixed(2)} µs` : `${fmt(v)} ${unit}`);
const rows = figures.map((f) => {
  const figure = `${val(f.value, f.unit)} (${val(f.spread[0], f.unit)}–${val(f.spread[1], f.unit)})`;
  const ratio = f.ratio !== undefined ? `${f.ratio.toFixed(2)} (${f.ratioSpread![0].toFixed(2)}–${f.ratioSpread![1].toFixed(2)}) of ${val(f.baseline!, f.unit)}` : '';
  const floor = f.floor ? `${f.floor}: ${f.holds ? 'holds' : '**missed**'}` : '';
  return `| \`${f.name}\` | ${figure} | ${ratio} | ${floor} | ${(f.note ?? '').replace(/\|/g, '\\|')} |`;
});
const la = meta.loadavg as { start: number[]; end: number[] };
const table = [
  `Run of ${String(meta.date).slice(0, 16).replace('T', ' ')} UTC at ${meta.commit}: ${meta.machine}; ${meta.pinning}; median of ${meta.runs} runs (spread min–max)` +
    `${meta.quick ? ', QUICK smoke run' : ''}, ${meta.seconds} s per HTTP load; load average ${la.start[0]} at start, ${la.end[0]} at end.`,
  '',
  '| benchmark | median (min–max) | ratio (min–max) of baseline | floor (issue 16) | note |',
  '|---|---|---|---|---|',
  ...rows,
].join('\n');

if (values.write) {
  const path = values.write;
  const text = readFileSync(path, 'utf8');
  const a = text.indexOf('<!-- bench-table -->');
  const b = text.indexOf('<!-- /bench-table -->');
  if (a < 0 || b < a) throw new Error(`${path} has no <!-- bench-table --> ... <!-- /bench-table --> markers`);
  writeFileSync(path, text.slice(0, a) + '<!-- bench-table -->\n' + table + '\n' + text.slice(b));
} else {
  process.stdout.write(table + '\n');
}
