/**
 * JSON lines kept as UTF-8 in off-heap chunks (Buffers): what the in-memory trace holds. As strings in an array, a
 * trace of up to --trace-memory bytes lived on the JS heap, where every line was copied to the old generation and
 * marked again by each full collection: under a map/unmap load that cost more than the command itself. Here a line
 * is garbage as soon as it is copied in, and what is kept is never scanned.
 *
 * The commonest records, a map or an unmap command as a route sends it, are kept packed instead (pushCommand): their
 * numbers and indexes into small tables of the strings they name, 33 or 46 bytes in place of a ~150-byte line, and no
 * JSON.stringify per command. Writing the line cost more than the command (most of it first-touching the fresh
 * memory the trace grows into); lines() gives the line back, exactly as JSON.stringify made it, and `bytes` counts
 * it as that line, so the trace budget is spent as before.
 */

/** The first chunk: a session with a few records holds little (idle sessions hold none: chunks come on first use). */
const FIRST_CHUNK = 4096;
/** Chunks double up to this size; a longer line gets a chunk of its own size. */
const MAX_CHUNK = 1024 * 1024;
const NEWLINE = 0x0a;
/** Tags of packed records: bytes UTF-8 never has, so a line (UTF-8, whatever its text) never starts with one. */
const PACKED_MAP = 0xff;
const PACKED_UNMAP = 0xfe;
/** tag, seq f64, time (ms) f64, actor u32, did u32, iova u32, [paddr u32,] size u32, [prot count u8, PROT_MAX × u16] */
const UNMAP_BYTES = 1 + 8 + 8 + 4 + 4 + 4 + 4;
const PROT_MAX = 4;
const MAP_BYTES = UNMAP_BYTES + 4 + 1 + 2 * PROT_MAX;
/** Strings the tables may hold before a record adds its (at most 7): prot indexes stay under 65,536. */
const STRINGS_MAX = 65_000;
/** `by: null`. */
const NO_ACTOR = 0xffffffff;
/** The fixed text of each packed line (its values left out) and its newline: `bytes` adds the values' lengths. */
const MAP_FIXED = '{"seq":,"time":,"by":,"cmd":{"op":"map","did":,"iova":,"paddr":,"size":,"prot":[]}}'.length + 1;
const UNMAP_FIXED = '{"seq":,"time":,"by":,"cmd":{"op":"unmap","did":,"iova":,"size":}}'.length + 1;
const ACTOR_FIXED = '{"role":,"label":}'.length;
const MAP_KEYS = ['op', 'did', 'iova', 'paddr', 'size', 'prot'];
const UNMAP_KEYS = ['op', 'did', 'iova', 'size'];
const ACTOR_KEYS = ['role', 'label'];

/** Bytes of JSON.stringify(s) as UTF-8 (JSON escapes lone surrogates, so this is its exact length). */
const jsonBytes = (s: string): number => Buffer.byteLength(JSON.stringify(s));

/** Decimal digits of a non-negative safe integer (its JSON text). */
function digits(n: number): number {
  let d = 1;
  for (let p = 10; p <= n && d < 16; p *= 10) d++;
  return d <= 15 ? d : String(n).length;
}

/** A plain object whose enumerable keys are exactly `keys`, in that order: JSON.stringify writes just those. */
function hasKeys(o: object, keys: readonly string[]): boolean {
  if (Object.getPrototypeOf(o) !== Object.prototype || (o as { toJSON?: unknown }).toJSON !== undefined) return false;
  let i = 0;
  for (const k in o) if (k !== keys[i++]) return false;
  return i === keys.length;
}

/** An own data property (not a getter): on a frozen object its value never changes. */
const isDataProperty = (o: object, key: string): boolean => 'value' in (Object.getOwnPropertyDescriptor(o, key) ?? {});

const isU32 = (v: unknown): v is number => typeof v === 'number' && v >>> 0 === v;

export class JsonLines {
  private readonly chunks: Buffer[] = [];
  /** A DataView of the last chunk (packed records are written through it). */
  private view: DataView | null = null;
  /** Bytes written into the last chunk. */
  private used = 0;
  /** Bytes held, counted as JSON lines: each line's UTF-8 and its newline (a packed record: the line it gives back). */
  bytes = 0;
  /** Strings packed records name (dids, roles, labels, prot flags), by index, and the bytes of each as JSON. */
  private readonly strings: string[] = [];
  private readonly stringBytes: number[] = [];
  private readonly stringIndex = new Map<string, number>();
  /** Actors packed records name: role and label string indexes (label -1: null), and the bytes of each as JSON. */
  private readonly actors: Array<{ role: number; label: number; bytes: number }> = [];
  private readonly actorIndex = new Map<string, number>();
  private lastRole = '';
  private lastLabel: string | null = null;
  private lastActor = -1;
  /** The last actor object taken, when it cannot change (frozen, data properties): the same object, the same index. */
  private lastBy: object | null = null;
  /**
   * The last did packed and its string index, and the last prot list's flags, their indexes and JSON bytes: a client
   * maps in one domain with the same flags over and over (no table lookup then).
   */
  private lastDid: string | null = null;
  private lastDidIndex = 0;
  private readonly lastProt: string[] = [];
  private readonly lastProtIndex: number[] = [];
  private lastProtBytes = 0;
  /** The last time string packed, its milliseconds and the bytes of it as JSON. */
  private lastTime: string | null = null;
  private lastMs = 0;
  private lastTimeBytes = 0;

  /** Appends a line (no newline in it: JSON text escapes them). */
  push(line: string): void {
    // UTF-8 takes at most 3 bytes per UTF-16 unit (a surrogate pair: 4 for 2).
    const room = 3 * line.length + 1;
    const chunk = this.room(room);
    const n = chunk.write(line, this.used, 'utf8');
    chunk[this.used + n] = NEWLINE;
    this.used += n + 1;
    this.bytes += n + 1;
  }

  /**
   * Appends the record `{ seq, time, by, cmd }` of a map or unmap command packed, when it is one of the shapes a
   * packed record gives back exactly (the keys in the order routes and replays make them, u32 addresses, a time
   * as isoNow writes it); false (nothing appended) for anything else, which the caller keeps as its JSON line.
   */
  pushCommand(seq: number, time: string, by: unknown, cmd: unknown): boolean {
    // The tables stay small (a prot flag's index is a u16): past this many strings, records stay JSON lines.
    if (typeof cmd !== 'object' || cmd === null || !Number.isSafeInteger(seq) || seq < 0 || this.strings.length > STRINGS_MAX) return false;
    const c = cmd as { op?: unknown; did?: unknown; iova?: unknown; paddr?: unknown; size?: unknown; prot?: unknown };
    const map = c.op === 'map';
    if (!map && c.op !== 'unmap') return false;
    if (!hasKeys(c, map ? MAP_KEYS : UNMAP_KEYS) || typeof c.did !== 'string' || !isU32(c.iova) || !isU32(c.size)) return false;
    let paddr = 0;
    let protBytes = 0;
    const prot = c.prot as unknown[];
    if (map) {
      if (!isU32(c.paddr) || !Array.isArray(prot) || prot.length > PROT_MAX || Object.getPrototypeOf(prot) !== Array.prototype || (prot as { toJSON?: unknown }).toJSON !== undefined) return false;
      for (let i = 0; i < prot.length; i++) if (typeof prot[i] !== 'string') return false;
      paddr = c.paddr;
    }
    const actor = this.actorOf(by);
    if (actor === -2) return false;
    if (time !== this.lastTime && !this.setTime(time)) return false;
    if (c.did !== this.lastDid) {
      this.lastDidIndex = this.stringOf(c.did);
      this.lastDid = c.did;
    }
    const did = this.lastDidIndex;
    let bytes = (map ? MAP_FIXED : UNMAP_FIXED) + digits(seq) + this.lastTimeBytes + (actor === NO_ACTOR ? 4 : this.actors[actor]!.bytes) + this.stringBytes[did]! + digits(c.iova) + digits(c.size);
    const chunk = this.room(map ? MAP_BYTES : UNMAP_BYTES);
    const v = this.view!;
    let o = this.used;
    chunk[o] = map ? PACKED_MAP : PACKED_UNMAP;
    v.setFloat64(o + 1, seq, true);
    v.setFloat64(o + 9, this.lastMs, true);
    v.setUint32(o + 17, actor, true);
    v.setUint32(o + 21, did, true);
    v.setUint32(o + 25, c.iova, true);
    o += 29;
    if (map) {
      v.setUint32(o, paddr, true);
      o += 4;
    }
    v.setUint32(o, c.size, true);
    o += 4;
    if (map) {
      bytes += digits(paddr) + (prot.length > 1 ? prot.length - 1 : 0);
      chunk[o] = prot.length;
      const last = this.lastProt;
      let same = prot.length === last.length;
      for (let i = 0; same && i < prot.length; i++) same = prot[i] === last[i];
      if (!same) {
        last.length = this.lastProtIndex.length = this.lastProtBytes = 0;
        for (let i = 0; i < prot.length; i++) {
          const s = this.stringOf(prot[i] as string);
          last.push(prot[i] as string);
          this.lastProtIndex.push(s);
          this.lastProtBytes += this.stringBytes[s]!;
        }
      }
      protBytes = this.lastProtBytes;
      for (let i = 0; i < prot.length; i++) v.setUint16(o + 1 + 2 * i, this.lastProtIndex[i]!, true);
      o += 1 + 2 * PROT_MAX;
    }
    this.used = o;
    this.bytes += bytes + protBytes;
    return true;
  }

  /** The lines, in order (packed records given back as the JSON lines they stand for). */
  lines(): string[] {
    const out: string[] = [];
    this.chunks.forEach((c, i) => {
      const end = i === this.chunks.length - 1 ? this.used : c.length;
      const v = new DataView(c.buffer, c.byteOffset, c.length);
      for (let o = 0; o < end; ) {
        const tag = c[o]!;
        if (tag === PACKED_MAP || tag === PACKED_UNMAP) {
          out.push(this.unpack(v, o, tag === PACKED_MAP));
          o += tag === PACKED_MAP ? MAP_BYTES : UNMAP_BYTES;
          continue;
        }
        const nl = c.indexOf(NEWLINE, o);
        out.push(c.toString('utf8', o, nl));
        o = nl + 1;
      }
    });
    return out;
  }

  /** A packed record's line: the record rebuilt with its keys in their order, through JSON.stringify. */
  private unpack(v: DataView, o: number, map: boolean): string {
    const actor = v.getUint32(o + 17, true);
    const a = actor === NO_ACTOR ? null : this.actors[actor]!;
    const by = a ? { role: this.strings[a.role]!, label: a.label < 0 ? null : this.strings[a.label]! } : null;
    const did = this.strings[v.getUint32(o + 21, true)]!;
    const iova = v.getUint32(o + 25, true);
    const head = { seq: v.getFloat64(o + 1, true), time: new Date(v.getFloat64(o + 9, true)).toISOString(), by };
    if (!map) return JSON.stringify({ ...head, cmd: { op: 'unmap', did, iova, size: v.getUint32(o + 29, true) } });
    const n = v.getUint8(o + 37);
    const prot = Array.from({ length: n }, (_, i) => this.strings[v.getUint16(o + 38 + 2 * i, true)]!);
    return JSON.stringify({ ...head, cmd: { op: 'map', did, iova, paddr: v.getUint32(o + 29, true), size: v.getUint32(o + 33, true), prot } });
  }

  /** The last chunk with `room` bytes free after `used` (a new one when it has not). */
  private room(room: number): Buffer {
    let chunk = this.chunks[this.chunks.length - 1];
    if (!chunk || chunk.length - this.used < room) {
      if (chunk) this.chunks[this.chunks.length - 1] = chunk.subarray(0, this.used);
      // allocUnsafeSlow: a chunk of its own, not a slice of Buffer's shared pool that another slice could keep alive.
      chunk = Buffer.allocUnsafeSlow(Math.max(room, chunk ? Math.min(2 * chunk.length, MAX_CHUNK) : FIRST_CHUNK));
      this.chunks.push(chunk);
      this.view = new DataView(chunk.buffer, chunk.byteOffset, chunk.length);
      this.used = 0;
    }
    return chunk;
  }

  /** The index of a string in the table (added on first use; at most 65,536, the u16 of prot flags). */
  private stringOf(s: string): number {
    let i = this.stringIndex.get(s);
    if (i === undefined) {
      i = this.strings.length;
      this.strings.push(s);
      this.stringBytes.push(jsonBytes(s));
      this.stringIndex.set(s, i);
    }
    return i;
  }

  /** The actor table's index of `by` (NO_ACTOR: null), or -2 when it is not `{ role, label }` of strings / null. */
  private actorOf(by: unknown): number {
    if (by === null) return NO_ACTOR;
    if (by === this.lastBy) return this.lastActor;
    if (typeof by !== 'object' || !hasKeys(by as object, ACTOR_KEYS)) return -2;
    const { role, label } = by as { role: unknown; label: unknown };
    if (typeof role !== 'string' || (label !== null && typeof label !== 'string')) return -2;
    if (role === this.lastRole && label === this.lastLabel && this.lastActor >= 0) return this.lastActor;
    const key = JSON.stringify([role, label]);
    let i = this.actorIndex.get(key);
    if (i === undefined) {
      const r = this.stringOf(role);
      const l = label === null ? -1 : this.stringOf(label);
      i = this.actors.length;
      this.actors.push({ role: r, label: l, bytes: ACTOR_FIXED + this.stringBytes[r]! + (l < 0 ? 4 : this.stringBytes[l]!) });
      this.actorIndex.set(key, i);
    }
    this.lastRole = role;
    this.lastLabel = label;
    this.lastActor = i;
    this.lastBy = Object.isFrozen(by) && isDataProperty(by, 'role') && isDataProperty(by, 'label') ? by : null;
    return i;
  }

  /** Takes `time` as the packed time when toISOString gives it back from its milliseconds (isoNow's times do). */
  private setTime(time: string): boolean {
    const ms = Date.parse(time);
    if (!Number.isFinite(ms) || new Date(ms).toISOString() !== time) return false;
    this.lastTime = time;
    this.lastMs = ms;
    this.lastTimeBytes = jsonBytes(time);
    return true;
  }
}
