/**
 * One table of error codes, as API.md lists them (Fastify's lib/errors.js habit): every refusal anywhere in
 * iommud is an IommuError with one of these codes, so the HTTP status is never decided ad hoc.
 */
export const ERROR_STATUS = {
  BAD_REQUEST: 400,
  UNSUPPORTED_MEDIA_TYPE: 415,
  UNALIGNED: 400,
  OUT_OF_RANGE: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  NOT_MAPPED: 404,
  ALREADY_MAPPED: 409,
  DEVICE_BUSY: 409,
  DOMAIN_ATTACHED: 409,
  NOT_ATTACHED: 409,
  PARTIAL_UNMAP: 409,
  DOMAIN_TYPE: 409,
  DMA_DEBUG: 409,
  NO_SPACE: 507,
  PAYLOAD_TOO_LARGE: 413,
  LIMIT: 429,
  /** Persistence failed (disk full, permission): mutations are refused, reads keep working. */
  UNAVAILABLE: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class IommuError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'IommuError';
    this.code = code;
    this.status = ERROR_STATUS[code];
    this.details = details && addressesAsHex(details);
  }

  toJSON(): { error: { code: ErrorCode; message: string; details?: Record<string, unknown> } } {
    return { error: { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) } };
  }
}

/** Detail fields that hold addresses: given as lower-case hex strings, as every address in the API (API.md). */
const ADDRESS_FIELDS = new Set(['iova', 'paddr', 'dmaAddr', 'dmaLimit', 'far', 'ttbr0']);

function addressesAsHex(details: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | null = null;
  for (const k in details) {
    const v = details[k];
    if (typeof v === 'number' && ADDRESS_FIELDS.has(k) && Number.isFinite(v)) (out ??= { ...details })[k] = hex(v);
  }
  return out ?? details;
}

export function fail(code: ErrorCode, message: string, details?: Record<string, unknown>): never {
  throw new IommuError(code, message, details);
}

const HEX1 = Array.from({ length: 256 }, (_, i) => i.toString(16));
const HEX2 = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/**
 * Lower-case hex with 0x, not zero-padded: the API's one spelling of addresses and register values. Built from
 * byte tables: Number#toString(16) costs ~9× more, and every fault, event and view formats several of these.
 */
export function hex(n: number): string {
  if (n >>> 0 !== n) return '0x' + Math.trunc(n).toString(16);
  if (n < 0x100) return '0x' + HEX1[n]!;
  if (n < 0x10000) return '0x' + HEX1[n >>> 8]! + HEX2[n & 255]!;
  if (n < 0x1000000) return '0x' + HEX1[n >>> 16]! + HEX2[(n >>> 8) & 255]! + HEX2[n & 255]!;
  return '0x' + HEX1[n >>> 24]! + HEX2[(n >>> 16) & 255]! + HEX2[(n >>> 8) & 255]! + HEX2[n & 255]!;
}
