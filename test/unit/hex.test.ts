import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hex } from '../../src/errors.js';

describe('hex()', () => {
  it('spells every 32-bit value as Number#toString(16) does, and sizes past 32 bits too', () => {
    for (const n of [0, 1, 15, 16, 255, 256, 0xfff, 0x1000, 0xffff, 0x10000, 0xffffff, 0x1000000, 0x80000000, 0xffffffff, 2 ** 32, 2 ** 40]) {
      expect(hex(n)).toBe('0x' + n.toString(16));
    }
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), (n) => hex(n) === '0x' + n.toString(16)), { numRuns: 20_000 });
  });
});
