export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  baseline?: number;
  ratio?: number;
  note?: string;
}

/** A figure over several runs: the median run's value, with the spread (min–max) over all of them. */
export interface Figure extends BenchResult {
  spread: [number, number];
  /** Each run's value, in run order: a bimodal figure (two runs alike, one apart) shows here, not in the spread. */
  values: number[];
  /** Spread of the ratio (each run's ratio is taken within that run, against its own baseline). */
  ratioSpread?: [number, number];
  runs: number;
  /** The floor of issue 16, where the figure has one, and whether the median meets it. */
  floor?: string;
  holds?: boolean;
}

/** Floors (issue 16; the cache figures: issue 14), on `value` unless `ratio` says the floor is on the figure's ratio to its baseline. */
const FLOORS: Record<string, { min?: number; max?: number; ratio?: true; text: string }> = {
  'http-map-unmap': { min: 0.6, ratio: true, text: '≥ 0.6 of empty GET' },
  'http-access': { min: 0.7, ratio: true, text: '≥ 0.7 of empty GET' },
  'translate-tlb-hit': { min: 0.6, ratio: true, text: '≥ 0.6 of Map.get loop' },
  'translate-walk': { min: 20e6, text: '≥ 20 M/s' },
  'ws-stream-translate-random': { min: 5e6, text: '≥ 5 M/s' },
  'dma-map-unmap-single-8p': { max: 1500, text: '≤ 1.5 µs' },
  'dma-map-unmap-single-8p-noreuse': { max: 1500, text: '≤ 1.5 µs' },
  'ws-fault-fanout': { min: 150e3, text: '≥ 150 k/s each' },
  'ws-fault-fanout-p99': { max: 5, text: '≤ 5 ms' },
  'session-idle-rss': { max: 128 * 1024, text: '≤ 128 KiB' },
  'sessions-create': { min: 2000, text: '≥ 2,000/s' },
  'restore-time': { max: 1, text: '≤ 1 s' },
  'cpu-load-line': { max: 2000, text: '≤ 2 µs' },
  'cpu-store-line': { max: 2000, text: '≤ 2 µs' },
  'dma-map-unmap-8p-noncoherent': { max: 2, ratio: true, text: '≤ 2× coherent' },
  'bounce-copy': { min: 1, text: '≥ 1 GB/s' },
  'bounce-copy-cached': { min: 1, text: '≥ 1 GB/s' },
};

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** Figures by name, in the order of the first run; each the median of the runs that produced it. */
export function aggregate(runs: BenchResult[][]): Figure[] {
  const byName = new Map<string, BenchResult[]>();
  for (const run of runs) for (const r of run) (byName.get(r.name) ?? byName.set(r.name, []).get(r.name)!).push(r);
  return [...byName].map(([name, rs]) => {
    const values = rs.map((r) => r.value);
    const value = median(values);
    // The note of the run nearest the median (notes carry that run's counts).
    const mid = rs.reduce((a, b) => (Math.abs(b.value - value) < Math.abs(a.value - value) ? b : a));
    const f: Figure = { name, value, unit: rs[0]!.unit, spread: [Math.min(...values), Math.max(...values)], values, runs: rs.length };
    const baselines = rs.flatMap((r) => (r.baseline !== undefined ? [r.baseline] : []));
    if (baselines.length) f.baseline = median(baselines);
    const ratios = rs.flatMap((r) => (r.ratio !== undefined ? [r.ratio] : []));
    if (ratios.length) {
      f.ratio = median(ratios);
      f.ratioSpread = [Math.min(...ratios), Math.max(...ratios)];
    }
    if (mid.note) f.note = mid.note;
    return judge(f);
  });
}

/** Sets the figure's floor and whether its median meets it (where issue 16 gives it one). */
export function judge(f: Figure): Figure {
  const floor = FLOORS[f.name];
  if (!floor) return f;
  const v = floor.ratio ? f.ratio! : f.value;
  f.floor = floor.text;
  f.holds = (floor.min === undefined || v >= floor.min) && (floor.max === undefined || v <= floor.max);
  return f;
}

/** One JSON object per line with --json (the first line describes the machine and the pinning); otherwise a table. */
export function report(figures: Figure[], json: boolean, meta: Record<string, unknown>): void {
  if (json) {
    process.stdout.write(JSON.stringify({ meta }) + '\n');
    for (const f of figures) process.stdout.write(JSON.stringify(f) + '\n');
    return;
  }
  const rows = figures.map((f) => [
    f.name,
    fmt(f.value) + ' ' + f.unit,
    `${fmt(f.spread[0])}–${fmt(f.spread[1])}`,
    f.baseline !== undefined ? fmt(f.baseline) + ' ' + f.unit : '',
    f.ratio !== undefined ? `${f.ratio.toFixed(2)} (${f.ratioSpread![0].toFixed(2)}–${f.ratioSpread![1].toFixed(2)})` : '',
    f.floor ? `${f.floor} ${f.holds ? 'holds' : 'MISSED'}` : '',
    f.note ?? '',
  ]);
  const head = ['benchmark', `median of ${figures[0]?.runs ?? 0}`, 'spread', 'baseline', 'ratio (spread)', 'floor', 'note'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(w[i]!)).join('  ');
  process.stdout.write(`${meta.machine as string}; ${meta.pinning as string}\n`);
  process.stdout.write(line(head) + '\n' + w.map((n) => '-'.repeat(n)).join('  ') + '\n');
  for (const r of rows) process.stdout.write(line(r) + '\n');
}

export function fmt(v: number): string {
  if (v >= 1e6) return (v / 1e6).toFixed(2) + 'M';
  if (v >= 1e4) return (v / 1e3).toFixed(1) + 'k';
  return v < 10 ? v.toFixed(3) : v.toFixed(1);
}
