/**
 * A session's journal: one line per acknowledged command, `<crc32 hex> <json>\n`, appended with group commit
 * (every record that arrives while an fsync is running shares the next one). A torn tail is detected by its
 * checksum and cut off on restore, never half-applied; a bad record followed by good ones is corruption, not a
 * torn write, and is refused rather than cut (cutting it would drop acknowledged records).
 */
import { closeSync, constants, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { crc32 } from 'node:zlib';

export function encodeRecord(rec: unknown): string {
  const json = JSON.stringify(rec);
  return `${crc32(json).toString(16).padStart(8, '0')} ${json}\n`;
}

/** A record in the middle of a journal (or a snapshot) that fails its checksum: the file is kept, not cut. */
export class JournalCorruptError extends Error {
  constructor(
    readonly path: string,
    readonly offset: number,
  ) {
    super(`${path}: corrupt record at byte ${offset} followed by intact records (not a torn tail); the file is kept as it is`);
    this.name = 'JournalCorruptError';
  }
}

/** One line's record, or undefined when its checksum or JSON is bad. */
function decodeLine(line: string): unknown {
  const sp = line.indexOf(' ');
  const json = line.slice(sp + 1);
  if (sp !== 8 || crc32(json).toString(16).padStart(8, '0') !== line.slice(0, 8)) return undefined;
  try {
    return JSON.parse(json);
  } catch {
    return undefined;
  }
}

/**
 * Records of a journal file (its first `upTo` bytes when given). `ends[i]` is the byte offset just past record
 * i; `validBytes` is where the whole records end. Bad bytes are a torn tail only when no intact record follows
 * them; otherwise this throws JournalCorruptError naming the offset.
 */
export function readJournal(path: string, upTo?: number): { records: unknown[]; ends: number[]; validBytes: number; torn: boolean } {
  let buf = readFileSync(path);
  if (upTo !== undefined && upTo < buf.length) buf = buf.subarray(0, upTo);
  const records: unknown[] = [];
  const ends: number[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const nl = buf.indexOf(10, pos);
    if (nl < 0) break; // no newline: the last write was torn
    const rec = decodeLine(buf.toString('utf8', pos, nl));
    if (rec === undefined) {
      for (let p = nl + 1, n = buf.indexOf(10, p); n >= 0; p = n + 1, n = buf.indexOf(10, p)) {
        if (decodeLine(buf.toString('utf8', p, n)) !== undefined) throw new JournalCorruptError(path, pos);
      }
      break;
    }
    records.push(rec);
    pos = nl + 1;
    ends.push(pos);
  }
  return { records, ends, validBytes: pos, torn: pos < buf.length };
}

/**
 * mkdir -p that gives up: Node's recursive mkdir retries forever where a parent exists but refuses children with
 * ENOENT (under /proc), spinning a core. Here each level is tried once, after its parent.
 */
function makeDir(dir: string): void {
  try {
    mkdirSync(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return;
    if (code !== 'ENOENT' || dirname(dir) === dir) throw e;
    makeDir(dirname(dir));
    mkdirSync(dir);
  }
}

/**
 * Creates the data dir if needed and proves it can hold a journal: a file created, written with O_DSYNC, read
 * back and removed. A path under a file, a read-only or pseudo file system (/proc, /sys) is refused here, with
 * the reason, rather than at the first session.
 */
export function checkDataDir(dir: string): void {
  const probe = join(dir, `.iommud-probe-${process.pid}`);
  try {
    makeDir(dir);
    if (!statSync(dir).isDirectory()) throw new Error('not a directory');
    const text = encodeRecord({ probe: true });
    const fd = openSync(probe, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_DSYNC);
    try {
      if (writeSync(fd, text) !== text.length) throw new Error('short write');
    } finally {
      closeSync(fd);
    }
    if (readFileSync(probe, 'utf8') !== text) throw new Error('what was written does not read back');
    unlinkSync(probe);
  } catch (e) {
    try {
      unlinkSync(probe);
    } catch {
      // Never created.
    }
    throw new Error(`the data dir ${dir} cannot hold journals: ${(e as Error).message}`);
  }
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
  /** The last write failure: the session refuses mutations until reopen() succeeds (reads keep working). */
  failed: Error | null = null;
  /** Called once when a write fails, before its waiters hear of it (the session undoes what was not durable). */
  onFailure: ((e: Error) => void) | null = null;
  /** Bytes of the file that are durable: everything acknowledged, nothing of a failed write. */
  bytes = 0;
  records = 0;
  fsyncs = 0;
  /** The file this journal writes (device and inode), to tell it from one renamed over its path. */
  private ino = -1;
  private dev = -1;

  private constructor(readonly path: string) {}

  /** Opens a journal for appending; cuts a torn tail first. */
  static async open(path: string, truncateTo?: number): Promise<Journal> {
    await Promise.resolve();
    const j = new Journal(path);
    j.openAt(truncateTo);
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

  /**
   * After a failure: opens the file again by its path (it must still exist: a deleted data dir stays an error)
   * cut to `length`, the bytes the session's state was reloaded from, and accepts writes again.
   */
  reopen(length: number): void {
    try {
      if (this.fd >= 0) closeSync(this.fd);
    } catch {
      // A failed disk: nothing left to release.
    }
    this.fd = -1;
    this.openAt(length);
    this.failed = null;
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
    this.commit();
    if (this.failed) throw this.failed;
  }

  /**
   * Replaces the file by one holding only `first` (a new header): atomic by rename, durable by fsync. If it
   * fails before the rename, the old file goes on (the snapshot says which of its bytes it covers); if the
   * rename happened but what follows failed, this descriptor no longer writes the file restore reads: the
   * journal fails (and is reopened by path later).
   */
  resetSync(first: unknown): void {
    this.flushSync();
    const text = encodeRecord(first);
    try {
      writeFileAtomic(this.path, text);
      const fd = openSync(this.path, constants.O_WRONLY | constants.O_APPEND | constants.O_DSYNC);
      closeSync(this.fd);
      this.fd = fd;
    } catch (e) {
      if (!this.writesPath()) this.fail(e as Error);
      throw e;
    }
    this.bytes = Buffer.byteLength(text);
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
    this.fd = -1; // never closed twice: the number may belong to another file by then
  }

  private openAt(length: number | undefined): void {
    // O_DSYNC: each write returns once its data is on disk, one system call per group commit instead of two.
    const fd = openSync(this.path, constants.O_WRONLY | constants.O_APPEND | constants.O_DSYNC);
    try {
      if (length !== undefined) ftruncateSync(fd, length);
      const st = fstatSync(fd);
      this.bytes = st.size;
      this.ino = st.ino;
      this.dev = st.dev;
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    this.fd = fd;
  }

  /**
   * The durable length when the file at our path is still the one we write (a failed write leaves bytes past
   * it that were refused); undefined when the path now holds another file (a reset's rename went through).
   */
  lengthAtPath(): number | undefined {
    try {
      const st = statSync(this.path);
      return st.ino === this.ino && st.dev === this.dev ? this.bytes : undefined;
    } catch {
      return undefined;
    }
  }

  /** Whether our descriptor still writes the file at our path (not a file renamed over it or unlinked). */
  private writesPath(): boolean {
    try {
      const a = fstatSync(this.fd);
      const b = statSync(this.path);
      return a.nlink > 0 && a.ino === b.ino && a.dev === b.dev;
    } catch {
      return false;
    }
  }

  private fail(e: Error): void {
    if (this.failed) return;
    this.failed = e;
    this.onFailure?.(e);
  }

  /**
   * Writes everything pending in one O_DSYNC write, then checks the file is still linked (a data dir deleted
   * under the daemon would otherwise take writes into a file no restart can read). On failure the batch's
   * bytes are not counted as durable and every waiter is refused.
   */
  private commit(): void {
    const batch = this.pending.join('');
    const waiters = this.waiters;
    this.pending = [];
    this.waiters = [];
    try {
      if (this.failed) throw this.failed;
      const buf = Buffer.from(batch);
      let off = 0;
      while (off < buf.length) off += writeSync(this.fd, buf, off);
      if (fstatSync(this.fd).nlink === 0) throw new Error(`the journal ${this.path} was deleted (data dir removed?)`);
      this.bytes += buf.length;
      this.fsyncs++;
    } catch (e) {
      // Whatever part of the batch reached the file was refused: cut it, so no restart resurrects it.
      try {
        ftruncateSync(this.fd, this.bytes);
      } catch {
        // The file is unreachable; reopen() cuts it to `bytes` before the next write.
      }
      this.fail(e as Error);
      for (const w of waiters) w.reject(this.failed!);
      return;
    }
    for (const w of waiters) w.resolve();
  }

  /**
   * Commits on the event loop's check phase, after the turn's requests have queued their records: blocking for
   * one device write there costs less latency than a trip through the thread pool, and the records of every
   * request that arrived meanwhile share the next write.
   */
  private async drain(): Promise<void> {
    try {
      while (this.pending.length) {
        this.commit();
        // Let the requests that arrived during the write queue their records before the next one.
        if (this.pending.length) await new Promise<void>((r) => setImmediate(r));
      }
    } finally {
      this.writing = null;
    }
  }
}
