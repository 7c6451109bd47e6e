/**
 * The byte form in which a session keeps its events: each event's JSON text inside a complete WebSocket text frame
 * (RFC 6455 5.2: FIN, opcode 1, unmasked as a server's frames are, minimal length encoding), appended to a log of
 * chunks that are never written twice. The events socket sends these bytes as they are (every subscriber the same
 * bytes, no copy); a replay or a snapshot reads the JSON inside. Bytes, not objects: a retained event is no garbage
 * the collector has to trace or copy, however many are kept.
 */

/** Length of the frame header whose second byte is `b1`. */
export function frameHead(b1: number): number {
  const len7 = b1 & 0x7f;
  return len7 < 126 ? 2 : len7 === 126 ? 4 : 10;
}

/** Writes the header of a text frame of `n` payload bytes at `at` (its length: frameHeadFor(n)). */
export function writeFrameHead(buf: Buffer, at: number, n: number): void {
  buf[at] = 0x81;
  if (n < 126) buf[at + 1] = n;
  else if (n < 0x10000) {
    buf[at + 1] = 126;
    buf.writeUInt16BE(n, at + 2);
  } else {
    buf[at + 1] = 127;
    buf.writeUInt32BE(Math.floor(n / 2 ** 32), at + 2);
    buf.writeUInt32BE(n >>> 0, at + 6);
  }
}

export function frameHeadFor(n: number): number {
  return n < 126 ? 2 : n < 0x10000 ? 4 : 10;
}

/** One text frame of `text` in a buffer of its own. */
export function textFrame(text: string): Buffer {
  const n = Buffer.byteLength(text);
  const head = frameHeadFor(n);
  const f = Buffer.allocUnsafe(head + n);
  writeFrameHead(f, 0, n);
  f.write(text, head);
  return f;
}

import { forgetJson, jsonOut, jsonStart, writeEventJson } from './json.js';
import type { IommuEvent } from './types.js';

const MIN_CHUNK = 1024;
const MAX_CHUNK = 256 * 1024;

/**
 * An append-only log of frames. Chunks start small (an idle session's few events cost a kilobyte) and double up to
 * 256 KiB; a full chunk is left as it is and a new one started, so bytes handed to a socket write (which may still
 * be pending in the kernel's queue) are never overwritten. Old chunks go when nothing refers to them any more.
 */
/** The chunk of a log nothing was appended to yet: one for all (a Buffer each cost an ArrayBuffer per session). */
const NO_CHUNK = Buffer.alloc(0);

export class FrameLog {
  chunk: Buffer = NO_CHUNK;
  used = 0;

  /** Starts a new chunk with room for at least `bytes`. */
  next(bytes: number): void {
    const size = Math.min(MAX_CHUNK, Math.max(MIN_CHUNK, 2 * this.chunk.length));
    this.chunk = Buffer.allocUnsafeSlow(Math.max(size, bytes));
    this.used = 0;
  }

  /**
   * Appends the event's JSON (src/events/json.ts) as a frame, written in place after room for a 16-bit length
   * header (126 bytes to 64 KiB: most events). Returns start; the frame is [start, used) of `chunk`. A shorter
   * event's 2-byte header goes right before its text (leaving 2 unused bytes); a longer one's moves the text.
   */
  appendEvent(ev: IommuEvent): number {
    if (this.chunk.length - this.used < 2048) this.next(2048);
    const at = this.used + 4;
    const end = writeEventJson(ev, this.chunk, at, true);
    const out = jsonOut();
    const from = jsonStart();
    const n = end - from;
    if (out !== this.chunk) {
      // It did not fit: the bytes are in a new buffer, which becomes the next chunk.
      this.chunk = out;
      const start = from - frameHeadFor(n);
      writeFrameHead(out, start, n);
      this.used = end;
      return start;
    }
    if (n < 126) {
      writeFrameHead(out, at - 2, n);
      this.used = end;
      return at - 2;
    }
    if (n >= 0x10000) {
      // Rare: a 64-bit length. The text moves 6 bytes on (or to a chunk of its own).
      forgetJson();
      if (end + 6 > out.length) return this.append(out.toString('utf8', at, end));
      out.copyWithin(at + 6, at, end);
      writeFrameHead(out, this.used, n);
      const start = this.used;
      this.used = end + 6;
      return start;
    }
    writeFrameHead(out, this.used, n);
    const start = this.used;
    this.used = end;
    return start;
  }

  /** Appends `text` as a frame; its bytes are [start, used) of `chunk` afterwards. Returns start. */
  append(text: string): number {
    // UTF-8 takes at most 3 bytes per UTF-16 unit. Text of 126 units or more needs the 16-bit length at least.
    let n = -1;
    let head: number;
    if (text.length >= 126 && 3 * text.length < 0x10000) head = 4;
    else head = frameHeadFor((n = Buffer.byteLength(text)));
    const max = head + (n < 0 ? 3 * text.length : n);
    if (this.chunk.length - this.used < max) this.next(max);
    const start = this.used;
    n = this.chunk.write(text, start + head, 'utf8');
    writeFrameHead(this.chunk, start, n);
    this.used = start + head + n;
    return start;
  }
}

/** The JSON text of the frame at [start, end) of `chunk`. */
export function frameText(chunk: Buffer, start: number, end: number): string {
  return chunk.toString('utf8', start + frameHead(chunk[start + 1]!), end);
}
