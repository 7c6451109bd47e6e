/**
 * JSON lines kept as UTF-8 in off-heap chunks (Buffers): what the in-memory trace holds. As strings in an array, a
 * trace of up to --trace-memory bytes lived on the JS heap, where every line was copied to the old generation and
 * marked again by each full collection: under a map/unmap load that cost more than the command itself. Here a line
 * is garbage as soon as it is copied in, and what is kept is never scanned.
 */

/** The first chunk: a session with a few records holds little (idle sessions hold none: chunks come on first use). */
const FIRST_CHUNK = 4096;
/** Chunks double up to this size; a longer line gets a chunk of its own size. */
const MAX_CHUNK = 1024 * 1024;
const NEWLINE = 0x0a;

export class JsonLines {
  private readonly chunks: Buffer[] = [];
  /** Bytes written into the last chunk. */
  private used = 0;
  /** Bytes held: each line's UTF-8 and its newline. */
  bytes = 0;

  /** Appends a line (no newline in it: JSON text escapes them). */
  push(line: string): void {
    // UTF-8 takes at most 3 bytes per UTF-16 unit (a surrogate pair: 4 for 2).
    const room = 3 * line.length + 1;
    let chunk = this.chunks[this.chunks.length - 1];
    if (!chunk || chunk.length - this.used < room) {
      if (chunk) this.chunks[this.chunks.length - 1] = chunk.subarray(0, this.used);
      // allocUnsafeSlow: a chunk of its own, not a slice of Buffer's shared pool that another slice could keep alive.
      chunk = Buffer.allocUnsafeSlow(Math.max(room, chunk ? Math.min(2 * chunk.length, MAX_CHUNK) : FIRST_CHUNK));
      this.chunks.push(chunk);
      this.used = 0;
    }
    const n = chunk.write(line, this.used, 'utf8');
    chunk[this.used + n] = NEWLINE;
    this.used += n + 1;
    this.bytes += n + 1;
  }

  /** The lines, in order. */
  lines(): string[] {
    const out: string[] = [];
    this.chunks.forEach((c, i) => {
      const text = c.toString('utf8', 0, i === this.chunks.length - 1 ? this.used : c.length);
      let start = 0;
      for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
        out.push(text.slice(start, nl));
        start = nl + 1;
      }
    });
    return out;
  }
}
