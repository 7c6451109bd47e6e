/**
 * The in-memory trace's store (src/session/lines.ts): lines come back exactly as pushed, in order, whatever their
 * characters and lengths (across chunk boundaries, longer than a chunk), and `bytes` is their UTF-8 with newlines.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JsonLines } from '../../src/session/lines.js';

const utf8 = (lines: string[]) => lines.reduce((n, l) => n + Buffer.byteLength(l) + 1, 0);

describe('JsonLines', () => {
  it('holds nothing until the first line', () => {
    const j = new JsonLines();
    expect([j.lines(), j.bytes]).toEqual([[], 0]);
    j.push('');
    expect([j.lines(), j.bytes]).toEqual([[''], 1]);
  });

  it('gives back every line in order, across chunks and past the largest chunk, costed as UTF-8', () => {
    const j = new JsonLines();
    const pushed: string[] = [];
    const add = (l: string) => {
      j.push(l);
      pushed.push(l);
    };
    for (let i = 0; i < 20_000; i++) add(JSON.stringify({ seq: i, label: i % 7 === 0 ? 'é€😀' : null, pad: 'x'.repeat(i % 300) }));
    add('y'.repeat(3 * 1024 * 1024));
    add(JSON.stringify({ after: 'the long line', surrogate: '\ud800' }));
    expect(j.lines()).toEqual(pushed);
    expect(j.bytes).toBe(utf8(pushed));
  });

  it('any strings without a newline round-trip (property)', () => {
    const line = fc.string({ unit: 'binary', maxLength: 5000 }).map((s) => s.replaceAll('\n', ' '));
    fc.assert(
      fc.property(fc.array(line, { maxLength: 60 }), (lines) => {
        const j = new JsonLines();
        for (const l of lines) j.push(l);
        // Lone surrogates are not UTF-8: they come back as U+FFFD, as any UTF-8 store gives them (JSON.stringify
        // escapes them, so a trace line never has one).
        const expected = lines.map((l) => Buffer.from(l, 'utf8').toString('utf8'));
        expect(j.lines()).toEqual(expected);
        expect(j.bytes).toBe(utf8(lines));
      }),
      { numRuns: 200 },
    );
  });
});
