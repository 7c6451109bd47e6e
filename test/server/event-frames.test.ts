import { describe, expect, it } from 'vitest';
import type { EventEmitter } from 'node:events';
import ws from 'ws';
import { textFrame } from '../../src/server/events.js';

/** Messages a WebSocket client decodes from the bytes (ws's own frame parser, as a subscriber's client runs it). */
// ws exports its frame parser at runtime; its type declarations leave it out.
const { Receiver } = ws as unknown as { Receiver: new (o: { isServer: boolean }) => EventEmitter & { write(b: Buffer): void } };

function decode(bytes: Buffer): string[] {
  const out: string[] = [];
  const r = new Receiver({ isServer: false });
  r.on('message', (data: Buffer, isBinary: boolean) => out.push(isBinary ? 'binary!' : String(data)));
  r.on('error', (e: Error) => out.push(`error: ${e.message}`));
  r.write(bytes);
  return out;
}

describe('event frames built once per event (fan-out)', () => {
  it('length encodings at the 7-bit, 16-bit and 64-bit boundaries decode to the same text, in order', () => {
    const texts = [0, 1, 125, 126, 127, 65535, 65536, 70000].map((n) => 'x'.repeat(n));
    const frames = texts.map(textFrame);
    expect(frames[2]!.subarray(0, 2)).toEqual(Buffer.from([0x81, 125]));
    expect(frames[3]!.subarray(0, 4)).toEqual(Buffer.from([0x81, 126, 0x00, 0x7e]));
    expect(frames[5]!.subarray(0, 4)).toEqual(Buffer.from([0x81, 126, 0xff, 0xff]));
    expect(frames[6]!.subarray(0, 10)).toEqual(Buffer.from([0x81, 127, 0, 0, 0, 0, 0x00, 0x01, 0x00, 0x00]));
    expect(decode(Buffer.concat(frames))).toEqual(texts);
  });

  it('the length counts UTF-8 bytes, not characters', () => {
    const text = JSON.stringify({ seq: 7, label: 'äöü €' });
    const f = textFrame(text);
    expect(f[1]).toBe(Buffer.byteLength(text));
    expect(decode(f)).toEqual([text]);
  });
});
