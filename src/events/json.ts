/**
 * An event's JSON text as UTF-8 bytes, written by a writer compiled per event type from its declaration in
 * ./types.ts (fast-json-stringify's idea, for this one union): `{"seq","time","type", the type's fields in
 * declaration order, "by"}`, nested objects in their declared key order. JSON.stringify walks every event
 * generically and its string is then encoded again into bytes; at fault rates that was a third of the events
 * socket's time. What is written parses to exactly what JSON.stringify gives for the same event
 * (test/server/event-json.test.ts checks every declared variant, escapes, non-ASCII, odd numbers and wrong-typed
 * values): undefined fields are left out, a value of another type than declared is written by the generic rules,
 * and a string that needs escaping or is not ASCII is written from JSON.stringify's own text.
 */
import { z } from 'zod';
import { Event, type IommuEvent } from './types.js';

/**
 * The output: bytes [base, pos) of buf. Written in place into the caller's buffer; past its end, the bytes so far
 * move to a new, bigger buffer (at GROWN_BASE, so a frame header fits before them) and writing goes on there.
 */
let buf: Buffer = Buffer.allocUnsafeSlow(0);
let base = 0;
let pos = 0;
/** Where the bytes start in a buffer made by room(): a frame header (at most 10 bytes) fits before them. */
export const GROWN_BASE = 10;

function room(n: number): void {
  if (pos + n <= buf.length) return;
  const bigger = Buffer.allocUnsafeSlow(Math.max(256 * 1024, 2 * (GROWN_BASE + pos - base + n)));
  buf.copy(bigger, GROWN_BASE, base, pos);
  pos = GROWN_BASE + pos - base;
  base = GROWN_BASE;
  buf = bigger;
}

/** Bytes of a string known to be ASCII (keys, literals, numbers' text). */
function ascii(s: string): void {
  room(s.length);
  const b = buf;
  let p = pos;
  for (let i = 0; i < s.length; i++) b[p++] = s.charCodeAt(i);
  pos = p;
}

function byte(c: number): void {
  room(1);
  buf[pos++] = c;
}

/** A JSON string literal: printable ASCII as is (names, hex: the common case); anything else from JSON.stringify. */
function str(s: string): void {
  room(s.length + 2);
  const b = buf;
  let p = pos;
  b[p++] = 0x22;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return other(s);
    b[p++] = c;
  }
  b[p++] = 0x22;
  pos = p;
}

/** A number as JSON.stringify writes it: whole numbers below 2^32 digit by digit, the rest from its text. */
function num(n: number): void {
  if (n >>> 0 !== n) return ascii(Number.isFinite(n) ? String(n) : 'null');
  let digits = 1;
  for (let x = n; x >= 10; x = Math.floor(x / 10)) digits++;
  room(digits);
  let p = pos + digits;
  pos = p;
  do {
    buf[--p] = 0x30 + (n % 10);
    n = Math.floor(n / 10);
  } while (n > 0);
}

/** What JSON.stringify leaves out of an object (and writes as null in an array). */
function skipped(v: unknown): boolean {
  return v === undefined || typeof v === 'function' || typeof v === 'symbol';
}

/** Any value, by JSON.stringify's rules: arrays, plain objects (keys in their own order), anything else as it says. */
function value(v: unknown): void {
  if (typeof v === 'string') return str(v);
  if (typeof v === 'number') return num(v);
  if (typeof v === 'boolean') return ascii(v ? 'true' : 'false');
  if (v === null) return ascii('null');
  if (Array.isArray(v)) {
    byte(0x5b);
    for (let i = 0; i < v.length; i++) {
      if (i) byte(0x2c);
      if (skipped(v[i])) ascii('null');
      else value(v[i]);
    }
    return byte(0x5d);
  }
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    byte(0x7b);
    let first = true;
    for (const k of Object.keys(v)) {
      const x = (v as Record<string, unknown>)[k];
      if (skipped(x)) continue;
      if (!first) byte(0x2c);
      first = false;
      str(k);
      byte(0x3a);
      value(x);
    }
    return byte(0x7d);
  }
  return other(v);
}

/** JSON.stringify's own text (a Date, a bigint's TypeError, a string that needs escaping). */
function other(v: unknown): void {
  // undefined (not an event at all) has no text: null, as in an array.
  const text = JSON.stringify(v) ?? 'null';
  room(3 * text.length);
  pos += buf.write(text, pos, 'utf8');
}

// ---- compiled writers -----------------------------------------------------------------------------------------

/** What a declared field holds, for the writer's first guess (checked at run time all the same). */
type Kind = 'string' | 'number' | 'boolean' | 'strings' | { keys: string[]; kinds: Kind[] } | 'any';

function unwrap(t: z.ZodType): z.ZodType {
  while (t instanceof z.ZodOptional || t instanceof z.ZodNullable) t = t.unwrap() as z.ZodType;
  return t;
}

function kindOf(t0: z.ZodType): Kind {
  const t = unwrap(t0);
  if (t instanceof z.ZodString || t instanceof z.ZodEnum) return 'string';
  if (t instanceof z.ZodLiteral) return typeof t.value === 'string' ? 'string' : 'any';
  if (t instanceof z.ZodNumber) return 'number';
  if (t instanceof z.ZodBoolean) return 'boolean';
  if (t instanceof z.ZodArray) return kindOf(t.element as z.ZodType) === 'string' ? 'strings' : 'any';
  if (t instanceof z.ZodObject) {
    const keys = Object.keys(t.shape);
    return { keys, kinds: keys.map((k) => kindOf(t.shape[k] as z.ZodType)) };
  }
  return 'any';
}

/** How many enumerable keys `o` has (for-in: no array made; a plain object has no inherited ones). */
function keyCount(o: object): number {
  let n = 0;
  for (const _ in o) n++;
  return n;
}

/**
 * Source of the code writing fields `keys` of object `o` (a JS expression naming it), each as `,"key":value`
 * when defined, counting the defined ones in `c` (the caller compares it with the object's key count: a key the
 * declaration does not have, or one holding undefined, sends the object to the generic rules). `n` numbers the
 * temporaries.
 */
function fieldsCode(o: string, c: string, keys: string[], kinds: Kind[], heads: string[], n: { i: number }, memo = false): string {
  return keys
    .map((k, i) => {
      const v = `v${n.i++}`;
      heads.push(`,${JSON.stringify(k)}:`);
      const head = `ascii(H[${heads.length - 1}]);`;
      const kind = kinds[i]!;
      let typed = '';
      if (kind === 'string') typed = `if (typeof ${v} === 'string') { ${head} str(${v}); } else `;
      else if (kind === 'number') typed = `if (typeof ${v} === 'number') { ${head} num(${v}); } else `;
      else if (kind === 'strings') typed = `if (Array.isArray(${v}) && ${v}.every(isString)) { ${head} byte(0x5b); for (let j = 0; j < ${v}.length; j++) { if (j) byte(0x2c); str(${v}[j]); } byte(0x5d); } else `;
      else if (typeof kind === 'object') {
        // A plain object with only declared keys is written field by field; anything else by the generic rules.
        const inner = fieldsCode(v, `c${v}`, kind.keys, kind.kinds, heads, n);
        typed = `if (${v} !== null && typeof ${v} === 'object' && Object.getPrototypeOf(${v}) === Object.prototype) {
    const at${v} = at(); ${head} const open${v} = at(); let c${v} = 0;
    ${inner}
    if (c${v} === keyCount(${v})) close(open${v}); else { rewind(at${v}); ${head} value(${v}); }
  } else `;
      }
      const write = `${typed}if (!skipped(${v})) { ${head} value(${v}); }`;
      // Top-level fields (memo): a value the last event of this type had too is copied from its bytes (see hit()).
      return `const ${v} = ${o}[${JSON.stringify(k)}];
  if (${v} !== undefined) ${c}++;
  ${memo ? `if (pb !== null && OK[${i}] === 1 && ${v} === VALS[${i}]) { if (run < 0) run = ${i}; } else { run = cut(MEMO, ${i}, run, pb, ps); ${write} VALS[${i}] = ${v}; OK[${i}] = fixed(${v}); }` : write}`;
    })
    .join('\n  ');
}

/**
 * The last event each writer wrote into a frame log (writeEventJson with `memo`), for the next one of its type: a
 * fault burst's events differ in seq and iova and little else, so a run of fields whose values equal the last
 * event's is one copy of that event's bytes instead of a key and a value written byte by byte each. Only values
 * whose text cannot change while they stay identical count (primitives, frozen arrays of strings); the bytes are
 * the log's, which it never writes twice. Updated in place as the event is written: until remember() says it is
 * done, there is nothing to copy from (a refused or failed write leaves none).
 */
interface Memo {
  /** Buffer and offset of the last event's text (null: none to copy from). */
  pb: Buffer | null;
  ps: number;
  /** Where each field's bytes start, from the event's first byte (one more: where the last field ends). */
  seg: Int32Array;
  vals: unknown[];
  /** 1: vals[k] is a value whose text is fixed by its identity. */
  ok: Uint8Array;
}
const MEMOS: Memo[] = [];
let memoOn = false;

function newMemo(fields: number): Memo {
  const m: Memo = { pb: null, ps: 0, seg: new Int32Array(fields + 1), vals: new Array<unknown>(fields).fill(undefined), ok: new Uint8Array(fields) };
  MEMOS.push(m);
  return m;
}

/** Where the writer may copy from (null: nowhere); the memo holds nothing until remember(). */
function begin(m: Memo): Buffer | null {
  const pb = memoOn ? m.pb : null;
  m.pb = null;
  return pb;
}

/**
 * Field k's bytes start here. The run of fields from `run` on (-1: none) held what they held in the last event
 * (whose text starts at `ps` of `pb`): it is copied first, as one piece. Returns -1 (no run).
 */
function cut(m: Memo, k: number, run: number, pb: Buffer | null, ps: number): number {
  const seg = m.seg;
  if (run >= 0) {
    const first = seg[run]!;
    const from = ps + first;
    const len = seg[k]! - first;
    const d = pos - base;
    if (len > 0) {
      room(len);
      if (pb === buf) buf.copyWithin(pos, from, from + len);
      else pb!.copy(buf, pos, from, from + len);
      // The last event's first field began with the brace close() put there: here it is a field like any other.
      if (first === 0) buf[pos] = 0x2c;
      pos += len;
    }
    for (let j = run; j < k; j++) seg[j] = d + seg[j]! - first;
  }
  seg[k] = pos - base;
  return -1;
}

/** 1: the next event may copy a field holding `v` from this one's bytes when it holds `v` too. */
function fixed(v: unknown): number {
  return typeof v !== 'object' || v === null || (Array.isArray(v) && Object.isFrozen(v) && v.every(isString)) ? 1 : 0;
}

/** The event is written (its text is [base, pos) of buf): the next one of its type may copy from it. */
function remember(m: Memo): void {
  if (!memoOn) return;
  m.pb = buf;
  m.ps = base;
}

/** The last events' bytes moved or may be written over: nothing is copied from them. */
export function forgetJson(): void {
  for (const m of MEMOS) m.pb = null;
}

/**
 * Ends an object whose fields were written from `open` on, each as `,"key":value`: the first comma becomes the
 * opening brace (or a brace is written when no field was). `open` is an offset from base (see at()).
 */
function close(open: number): void {
  if (pos === base + open) byte(0x7b);
  else buf[base + open] = 0x7b;
  byte(0x7d);
}

/** Positions as offsets from base: room() may move the bytes to another buffer mid-way. */
const at = (): number => pos - base;
const rewind = (p: number): void => void (pos = base + p);
const isString = (x: unknown): boolean => typeof x === 'string';

/** Writes the event; false (and nothing kept) when it has keys its declaration does not. */
type Writer = (ev: IommuEvent) => boolean;

function compile(keys: string[], kinds: Kind[]): Writer {
  const heads: string[] = [];
  const code = fieldsCode('e', 'c', keys, kinds, heads, { i: 0 }, true);
  const make = new Function(
    'H', 'ascii', 'byte', 'str', 'num', 'value', 'skipped', 'keyCount', 'close', 'at', 'rewind', 'isString', 'MEMO', 'VALS', 'OK', 'begin', 'cut', 'fixed', 'remember',
    `return function writeEvent(e) {\n  const pb = begin(MEMO);\n  const ps = MEMO.ps;\n  let run = -1;\n  const open = at();\n  let c = 0;\n  ${code}\n  cut(MEMO, ${keys.length}, run, pb, ps);\n  if (c !== keyCount(e)) return false;\n  close(open);\n  remember(MEMO);\n  return true;\n};`,
  );
  const memo = newMemo(keys.length);
  return make(heads, ascii, byte, str, num, value, skipped, keyCount, close, at, rewind, isString, memo, memo.vals, memo.ok, begin, cut, fixed, remember) as Writer;
}

/** The object schemas of the union (variants of one type included). */
function variants(u: z.ZodType): z.ZodObject[] {
  if (u instanceof z.ZodDiscriminatedUnion) return (u.options as z.ZodType[]).flatMap(variants);
  return [u as z.ZodObject];
}

const WRITERS = new Map<string, Writer>();
{
  const byType = new Map<string, Map<string, Kind>>();
  for (const o of variants(Event)) {
    const type = (o.shape.type as z.ZodLiteral<string>).value;
    const fields = byType.get(type) ?? new Map<string, Kind>();
    for (const [k, t] of Object.entries(o.shape)) {
      const kind = kindOf(t as z.ZodType);
      const had = fields.get(k);
      // Variants that declare one key differently: the generic rules for it.
      fields.set(k, had === undefined || JSON.stringify(had) === JSON.stringify(kind) ? kind : 'any');
    }
    byType.set(type, fields);
  }
  for (const [type, fields] of byType) {
    const keys = ['seq', 'time', 'type', ...[...fields.keys()].filter((k) => k !== 'seq' && k !== 'time' && k !== 'type' && k !== 'by'), 'by'];
    WRITERS.set(type, compile(keys, keys.map((k) => fields.get(k) ?? 'any')));
  }
}

/**
 * Writes the event's JSON into `target` from `at` on and returns the end. When it does not fit, the bytes are in
 * a new buffer instead, from GROWN_BASE on: jsonOut() says which buffer holds them. `memo`: the bytes stay where
 * they are, never written over (a frame log's), so the next event of the type may copy from them; until then
 * forgetJson() is due if they move.
 */
export function writeEventJson(ev: IommuEvent, target: Buffer, at: number, memo = false): number {
  buf = target;
  base = pos = at;
  memoOn = memo;
  const w = typeof ev === 'object' && ev !== null && Object.getPrototypeOf(ev) === Object.prototype ? WRITERS.get(ev.type) : undefined;
  // No writer for its type (emit()'s type check rules that out) or keys its declaration does not have: the
  // generic rules, whole.
  if (!w || !w(ev)) {
    pos = base;
    value(ev);
  }
  return pos;
}

/** The buffer the last writeEventJson() wrote into, and where the bytes start in it. */
export function jsonOut(): Buffer {
  return buf;
}
export function jsonStart(): number {
  return base;
}

/** The event's JSON text (what JSON.stringify gives, in the declaration's key order). */
export function eventJson(ev: IommuEvent): string {
  const end = writeEventJson(ev, Buffer.allocUnsafe(512), 0);
  return buf.toString('utf8', base, end);
}
