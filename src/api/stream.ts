/**
 * The binary translate stream (protocol version 1), shared by the daemon and the SDK. Little-endian throughout;
 * byte-by-byte layout in docs/stream.md. One request frame → one reply frame with the same request id; replies
 * come back in request order, so a client may pipeline as many requests as it likes.
 */
export const STREAM_VERSION = 1;

export const OP_TRANSLATE_READ = 1;
export const OP_TRANSLATE_WRITE = 2;
export const OP_TRANSLATE_EXEC = 3;
/** Read `len` bytes at each iova through the SMMU; the reply carries the bytes after the item records. */
export const OP_READ = 4;
/** Write bytes at each iova through the SMMU; the request carries the bytes after the item list. */
export const OP_WRITE = 5;
/** Read registers of the device's SMMU window: the items are byte offsets; the reply's paddr field is the value. */
export const OP_MMIO_READ = 6;
/** Write registers (with their side effects): offsets, then one u32 value per item. */
export const OP_MMIO_WRITE = 7;

export const FLAG_PRIV = 1;

/**
 * Close code of an event or stream socket whose session was deleted (4000 + the status a new request would get;
 * the reason says "session deleted").
 */
export const WS_SESSION_GONE = 4404;

/** Bytes one read or write frame may move, all items together: the JSON access route's `size` limit. */
export const STREAM_MAX_BYTES = 4 * 1024 * 1024;

export const STATUS_OK = 0;
export const STATUS_NAMES = ['ok', 'translation', 'permission', 'access-flag', 'external', 'multi-hit', 'tlb-miss', 'stalled', 'bad-offset'] as const;
export type StreamStatus = (typeof STATUS_NAMES)[number];
export const TLB_NAMES = ['hit', 'miss', 'bypass'] as const;
export const ITEM_FLAG_STALE = 1;
export const ITEM_FLAG_UNBACKED = 2;

export const REQUEST_HEADER = 12;
export const REPLY_HEADER = 12;
export const REPLY_ITEM = 8;

export interface StreamRequest {
  id: number;
  op: number;
  priv: boolean;
  /** Master ID recorded in FSYNR0 on a fault (0xff: the context's first MID). */
  mid: number;
  iovas: Uint32Array;
  /** OP_READ / OP_WRITE: bytes per item. */
  lengths?: Uint32Array;
  /** OP_WRITE: the bytes, items concatenated. */
  data?: Uint8Array;
  /** OP_MMIO_WRITE: the value for each offset. */
  values?: Uint32Array;
}

export interface StreamItem {
  status: StreamStatus;
  tlb: (typeof TLB_NAMES)[number];
  stale: boolean;
  unbacked: boolean;
  /** Physical address of the item's first byte; for a stalled item the stall number (id "stall-<n>"). */
  paddr: number;
}

export class StreamFrameError extends Error {}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Request: u8 version | u8 opcode | u8 flags | u8 mid | u32 id | u32 count | count × u32 iova
 *          [OP_READ, OP_WRITE: count × u32 length] [OP_WRITE: the bytes]
 */
export function encodeRequest(r: StreamRequest): Uint8Array {
  const n = r.iovas.length;
  const withLen = r.op === OP_READ || r.op === OP_WRITE || r.op === OP_MMIO_WRITE;
  const second = r.op === OP_MMIO_WRITE ? r.values : r.lengths;
  const dataLen = r.op === OP_WRITE ? (r.data?.length ?? 0) : 0;
  const buf = new Uint8Array(REQUEST_HEADER + 4 * n * (withLen ? 2 : 1) + dataLen);
  const dv = new DataView(buf.buffer);
  dv.setUint8(0, STREAM_VERSION);
  dv.setUint8(1, r.op);
  dv.setUint8(2, r.priv ? FLAG_PRIV : 0);
  dv.setUint8(3, r.mid);
  dv.setUint32(4, r.id, true);
  dv.setUint32(8, n, true);
  let o = REQUEST_HEADER;
  // The lists start 4-aligned in a fresh buffer: on little-endian hosts each is one block copy.
  if (LITTLE_ENDIAN) {
    new Uint32Array(buf.buffer, o, n).set(r.iovas);
    o += 4 * n;
    if (withLen) new Uint32Array(buf.buffer, o, n).set(second!);
    if (withLen) o += 4 * n;
  } else {
    for (let i = 0; i < n; i++, o += 4) dv.setUint32(o, r.iovas[i]!, true);
    if (withLen) for (let i = 0; i < n; i++, o += 4) dv.setUint32(o, second![i]!, true);
  }
  if (dataLen) buf.set(r.data!, o);
  return buf;
}

/** n little-endian u32s at byte `at` of buf, copied into a fresh (aligned) array: one block copy on LE hosts. */
function u32List(buf: Uint8Array, at: number, n: number): Uint32Array {
  const start = buf.byteOffset + at;
  if (LITTLE_ENDIAN) return new Uint32Array(buf.buffer.slice(start, start + 4 * n));
  const dv = new DataView(buf.buffer, start, 4 * n);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = dv.getUint32(4 * i, true);
  return out;
}

export function decodeRequest(buf: Uint8Array, maxItems: number): StreamRequest {
  if (buf.length < REQUEST_HEADER) throw new StreamFrameError(`a request frame is at least ${REQUEST_HEADER} bytes`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const version = dv.getUint8(0);
  if (version !== STREAM_VERSION) throw new StreamFrameError(`protocol version ${version} is not supported (this daemon speaks ${STREAM_VERSION})`);
  const op = dv.getUint8(1);
  if (op < OP_TRANSLATE_READ || op > OP_MMIO_WRITE) throw new StreamFrameError(`unknown opcode ${op}`);
  const id = dv.getUint32(4, true);
  const n = dv.getUint32(8, true);
  if (n === 0 || n > maxItems) throw new StreamFrameError(`count must be 1..${maxItems}`);
  const withLen = op === OP_READ || op === OP_WRITE || op === OP_MMIO_WRITE;
  const head = REQUEST_HEADER + 4 * n * (withLen ? 2 : 1);
  if (buf.length < head) throw new StreamFrameError('frame shorter than its count says');
  // The frame's bytes may not be 4-aligned in the socket buffer: the item lists are copied out.
  const iovas = u32List(buf, REQUEST_HEADER, n);
  const req: StreamRequest = { id, op, priv: (dv.getUint8(2) & FLAG_PRIV) !== 0, mid: dv.getUint8(3), iovas };
  if (op === OP_MMIO_WRITE) {
    req.values = u32List(buf, REQUEST_HEADER + 4 * n, n);
    if (buf.length !== head) throw new StreamFrameError('trailing bytes after the values');
  } else if (withLen) {
    const lengths = new Uint32Array(n);
    let total = 0;
    for (let i = 0; i < n; i++) {
      lengths[i] = dv.getUint32(REQUEST_HEADER + 4 * (n + i), true);
      if (lengths[i] === 0) throw new StreamFrameError(`item ${i} has length 0`);
      total += lengths[i]!;
    }
    req.lengths = lengths;
    if (op === OP_WRITE) {
      if (buf.length !== head + total) throw new StreamFrameError(`a write frame carries exactly the ${total} bytes its lengths say`);
      req.data = buf.subarray(head);
    } else if (buf.length !== head) throw new StreamFrameError('trailing bytes after a read request');
  } else if (buf.length !== head) throw new StreamFrameError('trailing bytes after the iovas');
  return req;
}

/**
 * Reply: u8 version | u8 opcode | u16 reserved | u32 id | u32 count
 *        | count × (u8 status | u8 tlb | u16 item flags | u32 paddr) [OP_READ: the bytes read, concatenated]
 */
export function replyHeader(buf: Uint8Array, op: number, id: number, n: number): DataView {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  dv.setUint8(0, STREAM_VERSION);
  dv.setUint8(1, op);
  dv.setUint16(2, 0, true);
  dv.setUint32(4, id, true);
  dv.setUint32(8, n, true);
  return dv;
}

export function decodeReply(buf: Uint8Array): { id: number; op: number; items: StreamItem[]; data: Uint8Array } {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf.length < REPLY_HEADER || dv.getUint8(0) !== STREAM_VERSION) throw new StreamFrameError('not a version-1 reply frame');
  const n = dv.getUint32(8, true);
  // One record is two little-endian words: status | tlb << 8 | flags << 16, then paddr. Names come from the
  // tables (no string is made per item) and the array is sized once.
  const items = new Array<StreamItem>(n);
  for (let i = 0, o = REPLY_HEADER; i < n; i++, o += REPLY_ITEM) {
    const w = dv.getUint32(o, true);
    items[i] = {
      status: STATUS_NAMES[w & 0xff]!,
      tlb: TLB_NAMES[(w >>> 8) & 0xff]!,
      stale: (w & (ITEM_FLAG_STALE << 16)) !== 0,
      unbacked: (w & (ITEM_FLAG_UNBACKED << 16)) !== 0,
      paddr: dv.getUint32(o + 4, true),
    };
  }
  return { id: dv.getUint32(4, true), op: dv.getUint8(1), items, data: buf.subarray(REPLY_HEADER + REPLY_ITEM * n) };
}
