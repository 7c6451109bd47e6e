/**
 * A session's journal: one line per acknowledged command, `<crc32 hex> <json>\n`, appended with group commit
 * (every record that arrives while an fsync is running shares the next one). A torn or corrupt tail is detected
 * by its checksum and cut off on restore, never half-applied.
 */
import { closeSync, constants, fsyncSync, openSync, readFileSync, renameSync, truncateSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { crc32 } from 'node:zlib';

export function encodeRecord(rec: unknown): string {
  const json = JSON.stringify(rec);
  return `${crc32(json).toString(16).padStart(8, '0')} ${json}\n`;
}

/** Records of a journal file up to the first bad one; `validBytes` is where the good prefix ends. */
export function readJournal(path: string): { records: unknown[]; validBytes: number; torn: boolean } {
  const text = readFileSync(path, 'utf8');
  const records: unknown[] = [];
  let pos = 0;
  while (pos < text.length) {
    const nl = text.indexOf('\n', pos);
    if (nl < 0) break; // no newline: the last write was torn
    const line = text.slice(pos, nl);
    const sp = line.indexOf(' ');
    const json = line.slice(sp + 1);
    if (sp !== 8 || crc32(json).toString(16).padStart(8, '0') !== line.slice(0, 8)) break;
    try {
      records.push(JSON.parse(json));
    } catch {
      break;
    }
    pos = nl + 1;
  }
  const validBytes = Buffer.byteLength(text.slice(0, pos));
  return { records, validBytes, torn: validBytes < Buffer.byteLength(text) };
}

/** Writes a file as tmp + fsync + rename (+ fsync of the directory), so readers see the old or the new whole. */
export function writeFileAtomic(path: string, text: string): void {
  const tmp = path + '.tmp';
  const fd = openSync(tmp, 'w');
  try {
    const buf = Buffer.from(text);
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

export class Journal {
  private fd = -1;
  private pending: string[] = [];
  private waiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  private writing: Promise<void> | null = null;
  /** The first write failure: the session refuses mutations from then on (reads keep working). */
  failed: Error | null = null;
  records = 0;
  fsyncs = 0;

  private constructor(readonly path: string) {}

  /** Opens (creating) a journal for appending; cuts a torn tail first. */
  static async open(path: string, truncateTo?: number): Promise<Journal> {
    await Promise.resolve();
    if (truncateTo !== undefined) truncateSync(path, truncateTo);
    const j = new Journal(path);
    // O_DSYNC: each write returns once its data is on disk, one system call per group commit instead of two.
    j.fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_DSYNC);
    return j;
  }

  /** Creates the file synchronously (so a session's creation is durable before its reply). */
  static createSync(path: string, first: unknown): void {
    const fd = openSync(path, 'wx');
    try {
      const buf = Buffer.from(encodeRecord(first));
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** Appends a record; resolves once it is on disk (fdatasync). */
  append(rec: unknown): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    this.pending.push(encodeRecord(rec));
    this.records++;
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    // Start the commit on the next turn of the event loop, so requests that arrived together share it.
    this.writing ??= new Promise<void>((r) => setImmediate(r)).then(() => this.drain());
    return p;
  }

  /** Writes whatever is queued now, synchronously (before a compaction swaps the file). */
  flushSync(): void {
    if (!this.pending.length) return;
    const batch = Buffer.from(this.pending.join(''));
    const waiters = this.waiters;
    this.pending = [];
    this.waiters = [];
    try {
      let off = 0;
      while (off < batch.length) off += writeSync(this.fd, batch, off);
      for (const w of waiters) w.resolve();
    } catch (e) {
      this.failed ??= e as Error;
      for (const w of waiters) w.reject(this.failed);
      throw this.failed;
    }
  }

  /** Replaces the file by one holding only `first` (a new header): atomic by rename, durable by fsync. */
  resetSync(first: unknown): void {
    this.flushSync();
    writeFileAtomic(this.path, encodeRecord(first));
    closeSync(this.fd);
    this.fd = openSync(this.path, constants.O_WRONLY | constants.O_APPEND | constants.O_DSYNC);
    this.records = 0;
  }

  /** Resolves when everything appended so far is durable (or failed). */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  async close(): Promise<void> {
    await this.flush();
    try {
      if (this.fd >= 0) closeSync(this.fd);
    } catch {
      // Already closed under us (a failed disk): nothing left to release.
    }
    this.fd = -1;
  }

  /** Closes the file under the journal, as a failed disk would (tests of the 503 path). */
  breakForTest(): void {
    if (this.fd >= 0) closeSync(this.fd);
  }

  /**
   * Writes everything pending in one O_DSYNC write. It runs on the event loop's check phase, after the turn's
   * requests have queued their records: blocking for one device write there costs less latency than a trip
   * through the thread pool, and the records of every request that arrived meanwhile share the next write.
   */
  private async drain(): Promise<void> {
    try {
      while (this.pending.length) {
        const batch = this.pending.join('');
        const waiters = this.waiters;
        this.pending = [];
        this.waiters = [];
        try {
          if (this.failed) throw this.failed;
          const buf = Buffer.from(batch);
          let off = 0;
          while (off < buf.length) off += writeSync(this.fd, buf, off);
          this.fsyncs++;
          for (const w of waiters) w.resolve();
        } catch (e) {
          this.failed ??= e as Error;
          for (const w of waiters) w.reject(this.failed);
        }
        // Let the requests that arrived during the write queue their records before the next one.
        if (this.pending.length) await new Promise<void>((r) => setImmediate(r));
      }
    } finally {
      this.writing = null;
    }
  }
}
