/**
 * The shape of a session snapshot, for snapshots that come from outside (a hand-written or edited trace): every
 * layer's snapshot() output, field by field. A snapshot that does not match is refused before anything is
 * restored; the daemon's own snapshots (journal, compaction) are checksummed and not re-checked.
 */
import { z } from 'zod';
import { CHUNK_SIZE } from '../memory/phys.js';

const Int = z.number().int();
const Count = Int.nonnegative();
const U32 = Count.max(0xffffffff);
const Name = z.string().max(1024);
const B64 = z.base64();
const Hex = z.string().regex(/^0x[0-9a-f]{1,8}$/);
const Access = z.enum(['read', 'write', 'exec']);
const FaultKind = z.enum(['translation', 'permission', 'access-flag', 'external', 'multi-hit', 'tlb-miss']);
const Dir = z.enum(['to-device', 'from-device', 'bidirectional']);
/** A register file: names the family knows are checked by its restore; values are 32-bit. */
const Regs = z.record(z.string().max(64), U32);

const FaultRecord = z.strictObject({
  smmu: Name,
  context: Count,
  device: Name.nullable(),
  domain: Name.nullable(),
  iova: Hex,
  access: Access,
  priv: z.boolean(),
  flags: Count,
  kind: FaultKind,
  family: z.literal('msm'),
  fsr: Hex,
  fsrBits: z.array(z.string().max(64)).max(32),
  far: Hex,
  fsynr0: Hex,
  fsynr1: Hex,
  stall: z.string().max(64).optional(),
});

const Request = z.strictObject({ iova: U32, access: Int.min(0).max(2), priv: z.boolean(), mid: Int.min(0).max(255), size: Count.max(4 * 1024 * 1024), data: B64.optional() });

const MsmSnapshot = z.strictObject({
  m2vcbr: z.array(U32).max(256),
  CR: U32,
  ESR: U32,
  globals: Regs.optional(),
  banks: z.array(
    z.strictObject({
      regs: Regs,
      faultMode: z.enum(['terminate', 'stall']),
      faultInterrupt: z.boolean(),
      domain: Name.nullable(),
      injected: FaultKind.nullable(),
      stalls: z.array(z.strictObject({ id: z.string().max(64), bank: Count, iova: U32, access: Int.min(0).max(2), priv: z.boolean(), mid: Int.min(0).max(255), fault: FaultRecord, createdAt: Count })).max(64),
      faults: Count,
    }),
  ),
  stalled: z.array(z.tuple([z.string().max(64), Request])),
});
const OmapSnapshot = z.strictObject({ regs: Regs, domain: Name.nullable(), faults: Count });
const GartSnapshot = z.strictObject({ regs: Regs, idle: B64, contexts: z.array(z.strictObject({ domain: Name.nullable(), faults: Count })) });

const IovaRange = z.strictObject({ iova: U32, size: Count });
const Iommu = z.strictObject({
  domainSeq: Count,
  domains: z.array(
    z.strictObject({
      id: Name,
      type: z.enum(['unmanaged', 'dma']),
      cfg: z.strictObject({ pgsizeBitmap: U32, partialUnmap: z.enum(['split', 'refuse']) }),
      flushPolicy: z.enum(['strict', 'deferred']),
      label: z.string().max(128).nullable(),
      l1: U32,
      smmu: Name.optional(),
      table: B64.optional(),
      attached: z.array(Name),
      pending: z.array(IovaRange),
      pages: z.tuple([Count, Count, Count, Count]),
    }),
  ),
});

const Dma = z.array(
  z.strictObject({
    device: Name,
    mode: z.enum(['iommu', 'direct']).optional(),
    domain: Name.nullable(),
    iova: z
      .strictObject({
        ranges: z.array(z.strictObject({ lo: Count, hi: Count })),
        cache: z.array(z.tuple([Count, z.array(Count)])),
        limitPfn: Count,
        startPfn: Count.optional(),
      })
      .nullable(),
    flushPolicy: z.enum(['strict', 'deferred']),
    dmaLimit: U32,
    mappings: z.array(
      z.strictObject({
        dmaAddr: U32,
        size: Count,
        dir: Dir,
        segments: z.array(z.strictObject({ paddr: U32, size: Count, dmaAddr: U32, bounce: z.strictObject({ paddr: U32, slots: Count }).optional() })),
        iova: Count,
        iovaBytes: Count,
        owner: z.enum(['cpu', 'device']).optional(),
      }),
    ),
    fq: z.array(z.strictObject({ iova: Count })),
  }),
);

const Pools = z.strictObject({
  pools: z.array(z.strictObject({ free: z.array(z.strictObject({ base: Count, end: Count })), used: Count })),
  buffers: z.array(z.strictObject({ paddr: U32, size: Count, pool: z.string().max(64) })),
});

/** Events are kept as they were emitted: a seq, a time and a type; their other fields are the event's own. */
const Event = z.looseObject({ seq: Count, time: z.string().max(64), type: z.string().max(64) });
const Bus = z.strictObject({ seq: Count, events: z.array(Event), counts: z.array(z.tuple([z.string().max(64), Count])) });

const Cache = z.strictObject({
  lines: z.array(
    z.strictObject({ addr: U32, data: B64, dirty: z.boolean(), cpu: z.tuple([Int, Int]), dev: z.tuple([Int, Int, Name.nullable()]), reported: Int }),
  ),
});

/** A chunk of RAM: its index in the 32-bit space and exactly its 64 KiB as base64. */
const CHUNK_B64 = Math.ceil(CHUNK_SIZE / 3) * 4;
const Mem = z.record(z.string().regex(/^(0|[1-9][0-9]{0,4})$/), B64.length(CHUNK_B64)).refine((m) => Object.keys(m).every((k) => Number(k) < 2 ** 32 / CHUNK_SIZE), 'a chunk index is below 65536');

export const SessionSnapshotSchema = z.strictObject({
  revision: Count,
  faultCounts: z.array(z.tuple([FaultKind, Count])),
  /** Ignored in a trace: a replayed session holds only the tokens minted for it. */
  tokens: z.array(z.unknown()),
  soc: z.strictObject({ stallSeq: Count, mem: Mem, ptPool: z.strictObject({ used: B64 }), smmus: z.array(z.union([MsmSnapshot, OmapSnapshot, GartSnapshot])) }),
  iommu: Iommu,
  dma: Dma,
  pools: Pools,
  bus: Bus,
  cache: Cache.optional(),
  bounce: z.strictObject({ taken: B64, bytesBounced: Count }).optional(),
  coherency: z.array(z.tuple([z.string().max(64), Count])).optional(),
});
