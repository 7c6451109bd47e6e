/**
 * The reply text of the hottest routes (map, unmap, device access), written for the one shape each view gives:
 * JSON.stringify walks any object generically and took ~0.5 µs for a map reply under Node 20, most of a map's
 * reply time. Each writer gives exactly JSON.stringify(data) (test/server/replies.test.ts): it writes the value
 * when it is that shape (a plain object with those keys in that order, strings that need no escaping, finite
 * numbers), and hands anything else to JSON.stringify.
 */
import * as S from '../api/schemas.js';

type Writer = (data: unknown) => string;

/**
 * A plain object JSON.stringify writes by its keys alone (no toJSON), whose own enumerable keys (what it writes)
 * are `keys`, in order. Object.keys rather than a for-in loop: a for-in site meeting every reply's shape goes
 * megamorphic, and sharing one with the trace's record check (lines.ts hasKeys) slowed that one down too.
 */
function shaped(o: unknown, keys: readonly string[]): o is Record<string, unknown> {
  if (typeof o !== 'object' || o === null || Object.getPrototypeOf(o) !== Object.prototype || (o as { toJSON?: unknown }).toJSON !== undefined) return false;
  const own = Object.keys(o);
  if (own.length !== keys.length) return false;
  for (let i = 0; i < own.length; i++) if (own[i] !== keys[i]) return false;
  return true;
}

/** A string JSON writes as it is between quotes: printable ASCII without `"` and `\`. */
function plainText(s: unknown): s is string {
  if (typeof s !== 'string') return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return false;
  }
  return true;
}

/** A number JSON writes as its own text (JSON.stringify(n) === String(n) for every finite n). */
const finite = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n);

const MAP_KEYS = ['iova', 'size', 'pages'];
const PAGE_KEYS = ['4K', '64K', '1M', '16M'];

/** MapResponse: `{ iova, size, pages: { 4K, 64K, 1M, 16M } }`. */
function mapReply(data: unknown): string {
  if (shaped(data, MAP_KEYS)) {
    const { iova, size, pages } = data;
    if (plainText(iova) && finite(size) && shaped(pages, PAGE_KEYS)) {
      const a = pages['4K'];
      const b = pages['64K'];
      const c = pages['1M'];
      const d = pages['16M'];
      if (finite(a) && finite(b) && finite(c) && finite(d)) return `{"iova":"${iova}","size":${size},"pages":{"4K":${a},"64K":${b},"1M":${c},"16M":${d}}}`;
    }
  }
  return JSON.stringify(data);
}

const UNMAP_KEYS = ['unmapped'];

/** UnmapResponse: `{ unmapped }`. */
function unmapReply(data: unknown): string {
  if (shaped(data, UNMAP_KEYS)) {
    const n = data.unmapped;
    if (finite(n)) return `{"unmapped":${n}}`;
  }
  return JSON.stringify(data);
}

const ACCESS_OK_KEYS = ['outcome', 'paddr', 'tlb'];

/** AccessResponse: a plain translation `{ outcome, paddr, tlb }` (faults, data and flags by JSON.stringify). */
function accessReply(data: unknown): string {
  if (shaped(data, ACCESS_OK_KEYS)) {
    const { outcome, paddr, tlb } = data;
    if (plainText(outcome) && plainText(paddr) && plainText(tlb)) return `{"outcome":"${outcome}","paddr":"${paddr}","tlb":"${tlb}"}`;
  }
  return JSON.stringify(data);
}

const stringify: Writer = (data) => JSON.stringify(data);

const WRITERS = new Map<unknown, Writer>([
  [S.MapResponse, mapReply],
  [S.UnmapResponse, unmapReply],
  [S.AccessResponse, accessReply],
]);

/** The reply writer of a route's response schema: one of the above, else JSON.stringify. */
export function replyWriter(schema: unknown): Writer {
  return WRITERS.get(schema) ?? stringify;
}
