/**
 * A session's journal: one line per acknowledged command, `<crc32 hex> <json>\n`, appended with group commit
 * (every record that arrives while an fsync is running shares the next one). A torn or corrupt tail is detected
 * by its checksum and cut off on restore, never half-applied.
 */
import { closeSync, fsyncSync, openSync, readFileSync, truncateSync, writeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
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

export class Journal {
  private fh: FileHandle | null = null;
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
    if (truncateTo !== undefined) truncateSync(path, truncateTo);
    const j = new Journal(path);
    j.fh = await open(path, 'a');
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
    this.writing ??= this.drain();
    return p;
  }

  /** Resolves when everything appended so far is durable (or failed). */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.fh?.close();
    this.fh = null;
  }

  private async drain(): Promise<void> {
    try {
      while (this.pending.length) {
        const batch = this.pending.join('');
        const waiters = this.waiters;
        this.pending = [];
        this.waiters = [];
        try {
          if (this.failed) throw this.failed;
          await this.fh!.write(batch);
          await this.fh!.datasync();
          this.fsyncs++;
          for (const w of waiters) w.resolve();
        } catch (e) {
          this.failed ??= e as Error;
          for (const w of waiters) w.reject(this.failed);
        }
      }
    } finally {
      this.writing = null;
    }
  }
}
