export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  baseline?: number;
  ratio?: number;
  note?: string;
}

/** One JSON object per line with --json; otherwise a table. */
export function report(results: BenchResult[], json: boolean): void {
  for (const r of results) {
    if (json) {
      const { note: _note, ...rest } = r;
      process.stdout.write(JSON.stringify(rest) + '\n');
    }
  }
  if (json) return;
  const rows = results.map((r) => [
    r.name,
    fmt(r.value) + ' ' + r.unit,
    r.baseline !== undefined ? fmt(r.baseline) : '',
    r.ratio !== undefined ? r.ratio.toFixed(2) : '',
    r.note ?? '',
  ]);
  const head = ['benchmark', 'value', 'baseline', 'ratio', 'note'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(w[i]!)).join('  ');
  process.stdout.write(line(head) + '\n' + w.map((n) => '-'.repeat(n)).join('  ') + '\n');
  for (const r of rows) process.stdout.write(line(r) + '\n');
}

function fmt(v: number): string {
  if (v >= 1e6) return (v / 1e6).toFixed(2) + 'M';
  if (v >= 1e4) return (v / 1e3).toFixed(1) + 'k';
  return v < 10 ? v.toFixed(3) : v.toFixed(1);
}
