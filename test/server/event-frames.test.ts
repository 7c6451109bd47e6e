import { describe, expect, it } from 'vitest';
import type { EventEmitter } from 'node:events';
import ws from 'ws';
import { EventBus, type IommuEvent } from '../../src/events/bus.js';
import { FrameLog, frameText } from '../../src/events/frames.js';
import fc from 'fast-check';
import { batchFrame, textFrame, wrote } from '../../src/server/events.js';

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

describe('the session\'s frame log (retained events are bytes)', () => {
  it('frames handed out stay as they were while later events fill new chunks; they decode in order', () => {
    const log = new FrameLog();
    const texts = Array.from({ length: 3000 }, (_, i) => JSON.stringify({ seq: i + 1, label: i % 7 === 0 ? 'äöü €'.repeat(i % 50) : 'x'.repeat(i % 300) }));
    const frames = texts.map((t) => {
      const start = log.append(t);
      return { chunk: log.chunk, start, end: log.used, copy: Buffer.from(log.chunk.subarray(start, log.used)) };
    });
    expect(new Set(frames.map((f) => f.chunk)).size).toBeGreaterThan(3);
    // Still the bytes they were when handed out, a frame of their text each.
    const wrong = frames.filter((f, i) => !f.chunk.subarray(f.start, f.end).equals(f.copy) || !f.copy.equals(textFrame(texts[i]!)) || frameText(f.chunk, f.start, f.end) !== texts[i]);
    expect(wrong).toEqual([]);
    expect(decode(Buffer.concat(frames.map((f) => f.copy)))).toEqual(texts);
  });

  it('events written in place: short (2-byte header), usual (16-bit), 64-bit lengths and chunk overflows all decode', () => {
    const log = new FrameLog();
    const sizes = [0, 10, 60, 126, 300, 2000, 70_000, 5, 250_000, 40, 3000];
    const events = sizes.map((n, i) => ({ seq: i + 1, time: 't', type: 'session', action: 'create', session: 'y'.repeat(n) }) as IommuEvent);
    const frames = events.map((ev) => {
      const start = log.appendEvent(ev);
      return { chunk: log.chunk, start, end: log.used };
    });
    expect(frames.map((f) => JSON.parse(frameText(f.chunk, f.start, f.end)))).toEqual(events);
    expect(decode(Buffer.concat(frames.map((f) => f.chunk.subarray(f.start, f.end))))).toEqual(events.map((e) => JSON.stringify(e)));
  });

  it('a retained event is its text at emit time: changing the emitted object afterwards changes no replay', () => {
    const bus = new EventBus(10);
    const seen: IommuEvent[] = [];
    bus.subscribe((ev) => seen.push(ev));
    bus.emit({ type: 'session', action: 'create', session: 's1' });
    (seen[0] as { session: string }).session = 'changed';
    expect(bus.replay(0).events).toEqual([{ seq: 1, time: seen[0]!.time, type: 'session', action: 'create', session: 's1' }]);
    expect(bus.get(1)).toEqual(bus.replay(0).events[0]);
  });
});

describe('a batched subscriber\'s array message (batch=1), joined from the log\'s frames', () => {
  /** Frames of `texts` in a log (2-byte, 16-bit and 64-bit headers, across chunks), as a subscriber holds them. */
  function held(texts: string[], pick: (i: number) => boolean, ranges = false) {
    const log = new FrameLog();
    const p = { batched: true, chunks: [] as Buffer[], starts: [] as number[], ends: [] as number[] };
    const kept: string[] = [];
    texts.forEach((t, i) => {
      const start = log.append(t);
      if (!pick(i)) return;
      kept.push(t);
      const n = p.chunks.length;
      // As the events socket holds them: a frame right after the last one held extends its range.
      if (ranges && n !== 0 && p.chunks[n - 1] === log.chunk && p.ends[n - 1] === start) return void (p.ends[n - 1] = log.used);
      p.chunks.push(log.chunk);
      p.starts.push(start);
      p.ends.push(log.used);
    });
    return { p, kept };
  }

  it('is one text frame of [text,text,...] for adjacent runs, filtered events and chunk boundaries alike', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 3000 }), fc.boolean()), { minLength: 1, maxLength: 120 }), fc.integer({ min: 0, max: 3 }), fc.boolean(), (spec, every, ranges) => {
        const texts = spec.map(([n, wide], i) => JSON.stringify({ seq: i + 1, x: (wide ? 'é' : 'x').repeat(n) }));
        const { p, kept } = held(texts, (i) => every === 0 || i % (every + 1) !== 0 || i === 0, ranges);
        expect(decode(batchFrame(p))).toEqual([`[${kept.join(',')}]`]);
      }),
      { numRuns: 300 },
    );
    const big = ['a', 'b'.repeat(70_000), 'c'].map((s, i) => JSON.stringify({ seq: i + 1, s }));
    expect(decode(batchFrame(held(big, () => true).p))).toEqual([`[${big.join(',')}]`]);
    expect(decode(batchFrame(held(big, () => true, true).p))).toEqual([`[${big.join(',')}]`]);
  });

  it('a join a socket kept (not all written at once) is never overwritten by the next join', () => {
    const a = held(Array.from({ length: 50 }, (_, i) => JSON.stringify({ seq: i + 1, a: i })), () => true);
    const b = held(Array.from({ length: 50 }, (_, i) => JSON.stringify({ seq: i + 1, b: 'z'.repeat(i) })), () => true);
    const first = batchFrame(a.p);
    const copy = Buffer.from(first);
    wrote(first, true);
    batchFrame(b.p);
    expect(first.equals(copy)).toBe(true);
    expect(decode(first)).toEqual([`[${a.kept.join(',')}]`]);
  });
});
