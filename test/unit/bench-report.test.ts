import { describe, expect, it } from 'vitest';
import { aggregate } from '../../bench/report.js';

describe('bench report: a figure over several runs', () => {
  it('is the median run with the spread, each run in order, the ratio of each run against its own baseline, and the floor judged on the median', () => {
    const runs = [
      [{ name: 'http-access', value: 9000, unit: 'req/s', baseline: 30000, ratio: 0.3 }, { name: 'translate-walk', value: 21e6, unit: 'translations/s' }],
      [{ name: 'http-access', value: 24000, unit: 'req/s', baseline: 32000, ratio: 0.75 }, { name: 'translate-walk', value: 19e6, unit: 'translations/s' }],
      [{ name: 'http-access', value: 22500, unit: 'req/s', baseline: 31000, ratio: 24000 / 31000 }],
    ];
    const [access, walk] = aggregate(runs);
    expect(access).toEqual({
      name: 'http-access', value: 22500, unit: 'req/s', spread: [9000, 24000], values: [9000, 24000, 22500], runs: 3,
      baseline: 31000, ratio: 0.75, ratioSpread: [0.3, 24000 / 31000], floor: '≥ 0.7 of empty GET', holds: true,
    });
    // Two runs: the median is their mean; 20 M/s is the floor, and 20 M/s holds.
    expect(walk).toMatchObject({ value: 20e6, spread: [19e6, 21e6], values: [21e6, 19e6], runs: 2, floor: '≥ 20 M/s', holds: true });
  });

  it('says MISSED when the median misses, whatever the best run did', () => {
    const [f] = aggregate([[{ name: 'dma-map-unmap-single-8p-noreuse', value: 1400, unit: 'ns' }], [{ name: 'dma-map-unmap-single-8p-noreuse', value: 2400, unit: 'ns' }], [{ name: 'dma-map-unmap-single-8p-noreuse', value: 2300, unit: 'ns' }]]);
    expect(f).toMatchObject({ value: 2300, spread: [1400, 2400], floor: '≤ 1.5 µs', holds: false });
  });
});
