import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Base64, isBase64 } from '../../src/api/schemas.js';

// The reference: zod's own base64 check (a whitespace regex and atob), which Base64 replaces on the hot path.
const reference = z.base64();
const agrees = (s: string): void => void expect([s, isBase64(s), Base64.safeParse(s).success]).toEqual([s, reference.safeParse(s).success, reference.safeParse(s).success]);

describe('Base64: accepts exactly what z.base64() accepts', () => {
  it('pinned cases: padding, stray characters, the URL alphabet, non-ASCII, whitespace', () => {
    const cases = ['', 'AAAA', 'QR==', 'QUI=', 'AB==', 'A===', 'AA=A', 'AAAA=AAA', 'A-AA', 'A_AA', 'AŁAA', 'AéAA', 'AA A', 'AA\nA', 'AAA', '====', 'AAAAAA==', 'AAAAA==='];
    for (const s of cases) agrees(s);
    expect(cases.filter(isBase64)).toEqual(['', 'AAAA', 'QR==', 'QUI=', 'AB==', 'AAAAAA==']);
  });

  it('random bytes encoded, then characters replaced, inserted or removed', () => {
    const chars = fc.constantFrom('A', 'z', '0', '9', '+', '/', '=', '-', '_', ' ', '\n', '\t', 'Ł', 'é', '\u0000', '.', '\u0141');
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 2 }), chars), { maxLength: 3 }), (bytes, edits) => {
        let s = Buffer.from(bytes).toString('base64');
        for (const [at, kind, c] of edits) {
          const i = s.length === 0 ? 0 : at % s.length;
          s = kind === 0 ? s.slice(0, i) + c + s.slice(i + 1) : kind === 1 ? s.slice(0, i) + c + s.slice(i) : s.slice(0, i) + s.slice(i + 1);
        }
        agrees(s);
      }),
      { numRuns: 3000 },
    );
  });

  it('strings over the alphabet and its neighbours', () => {
    const chars = fc.constantFrom('A', 'b', '7', '+', '/', '=', '-', '_', ' ', 'Ł');
    fc.assert(fc.property(fc.array(chars, { maxLength: 16 }), (cs) => {
      agrees(cs.join(''));
    }), { numRuns: 3000 });
  });
});
