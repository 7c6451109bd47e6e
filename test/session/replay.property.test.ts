import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IommuError } from '../../src/errors.js';
import { TINY } from '../../src/hw/profile.js';
import type { Command } from '../../src/session/commands.js';
import { Session } from '../../src/session/session.js';

/** Everything a replay must reproduce: tables bit for bit, registers, RAM, allocators, DMA state, revision. */
function fingerprint(s: Session): string {
  const snap = s.snapshot();
  const tables = [...s.iommu.domains.values()].map((d) => d.table.dumpTables());
  // Wall-clock stamps (event times, when a stall began) are not state a replay can or should reproduce.
  const text = JSON.stringify({ ...snap, bus: { seq: snap.bus.seq }, tables }, (k, v) => (k === 'createdAt' || k === 'time' ? undefined : v));
  return createHash('sha256').update(text).digest('hex');
}

const addr = (max: number) => fc.integer({ min: 0, max: max / 4096 - 1 }).map((p) => p * 4096);
const cmdArb = fc.oneof(
  fc.constant({ op: 'domain-alloc' } as Command),
  fc.record({ op: fc.constant('attach' as const), did: fc.constantFrom('dom-1', 'dom-2'), device: fc.constantFrom('dev0', 'dev1'), replace: fc.boolean() }),
  fc.record({ op: fc.constant('detach' as const), did: fc.constantFrom('dom-1', 'dom-2'), device: fc.constantFrom('dev0', 'dev1') }),
  fc.record({ op: fc.constant('map' as const), did: fc.constantFrom('dom-1', 'dom-2'), iova: addr(0x4000000), paddr: addr(0x3e00000).map((p) => 0x80000000 + p), size: fc.constantFrom(0x1000, 0x3000, 0x10000, 0x100000), prot: fc.constantFrom(['read'], ['read', 'write'], ['write', 'noexec']) }),
  fc.record({ op: fc.constant('unmap' as const), did: fc.constantFrom('dom-1', 'dom-2'), iova: addr(0x4000000), size: fc.constantFrom(0x1000, 0x10000, 0x200000) }),
  fc.record({ op: fc.constant('access' as const), device: fc.constantFrom('dev0', 'dev1'), iova: addr(0x4000000), access: fc.constantFrom('read' as const, 'write' as const), size: fc.constantFrom(4, 0x1800) }),
  fc.record({ op: fc.constant('flush' as const), did: fc.constantFrom('dom-1', 'dom-2') }),
  fc.record({ op: fc.constant('context-config' as const), smmu: fc.constant('smmu0'), ctx: fc.constantFrom('0', '1'), faultMode: fc.constantFrom('terminate' as const, 'stall' as const) }),
  fc.record({ op: fc.constant('clear-fault' as const), smmu: fc.constant('smmu0'), ctx: fc.constantFrom('0', '1') }),
  fc.record({ op: fc.constant('buffer-alloc' as const), size: fc.constantFrom(0x1000, 0x20000) }),
  fc.record({ op: fc.constant('memory-write' as const), paddr: addr(0x100000).map((p) => 0x80000000 + p), data: fc.constantFrom('AAEC', 'aGVsbG8=') }),
  fc.record({ op: fc.constant('dma-map' as const), device: fc.constant('dev1'), paddr: addr(0x100000).map((p) => 0x80400000 + p), size: fc.constantFrom(0x800, 0x3000), dir: fc.constantFrom('to-device' as const, 'from-device' as const) }),
  fc.record({ op: fc.constant('mmio' as const), smmu: fc.constant('smmu0'), ops: fc.constantFrom([{ op: 'write' as const, offset: 0x800, value: 0 }], [{ op: 'write' as const, offset: 0xff000, value: 0x100 }]) }),
) as unknown as fc.Arbitrary<Command>;

/** A non-coherent session (API.md v1.1): CPU cache, a coherent dev1, a bounce pool below dev0's mask. */
const NC = { cpuCache: { lineSize: 32 as const, lines: 16, coherent: ['dev1'] }, bounce: { paddr: 0x80100000, size: 0x4000 } };
const lowAddr = addr(0x10000).map((p) => 0x80400000 + p + 0x10);
const dmaAddrArb = fc.oneof(lowAddr, fc.constantFrom(0x80100000, 0x80100800, 0xfffff000, 0xffffe010, 0x81000010));
const ncCmdArb = fc.oneof(
  cmdArb,
  fc.record({ op: fc.constant('memory-read' as const), paddr: lowAddr, size: fc.constantFrom(4, 0x40, 0x1000) }),
  fc.record({ op: fc.constant('memory-write' as const), paddr: fc.oneof(lowAddr, fc.constant(0x81000010)), data: fc.constantFrom('AAEC', 'aGVsbG8=') }),
  fc.record({ op: fc.constant('cache-maintain' as const), action: fc.constantFrom('clean' as const, 'invalidate' as const, 'flush' as const), paddr: lowAddr, size: fc.constantFrom(1, 0x40, 0x1000, 0) }),
  fc.record({ op: fc.constant('dma-config' as const), device: fc.constantFrom('dev0', 'dev1'), mode: fc.constantFrom('iommu' as const, 'direct' as const), dmaLimit: fc.constantFrom(0x80ffffff, 0xffffffff) }),
  fc.record({ op: fc.constant('dma-map' as const), device: fc.constantFrom('dev0', 'dev1'), paddr: fc.oneof(lowAddr, fc.constant(0x81000010)), size: fc.constantFrom(0x20, 0x900, 0x3000), dir: fc.constantFrom('to-device' as const, 'from-device' as const, 'bidirectional' as const) }),
  fc.record({ op: fc.constant('dma-sync' as const), device: fc.constantFrom('dev0', 'dev1'), dmaAddr: dmaAddrArb, size: fc.constantFrom(0x10, 0x20), offset: fc.constantFrom(0, 0x10), for: fc.constantFrom('cpu' as const, 'device' as const) }),
  fc.record({ op: fc.constant('dma-unmap' as const), device: fc.constantFrom('dev0', 'dev1'), dmaAddr: dmaAddrArb, size: fc.constantFrom(0x20, 0x900), dir: fc.constantFrom('to-device' as const, 'from-device' as const, 'bidirectional' as const) }),
  fc.record({ op: fc.constant('access' as const), device: fc.constantFrom('dev0', 'dev1'), iova: fc.oneof(lowAddr, dmaAddrArb), access: fc.constantFrom('read' as const, 'write' as const), size: fc.constantFrom(4, 0x40) }),
) as unknown as fc.Arbitrary<Command>;
const VARIANTS = [
  { what: 'coherent (v1) sessions', opts: {}, arb: cmdArb },
  { what: 'sessions with a CPU cache and a bounce pool', opts: NC, arb: ncCmdArb },
];

describe.each(VARIANTS)('property: trace replay reproduces the session exactly ($what)', ({ opts, arb }) => {
  it('random command sequences: replayed twice, the same tables, registers, RAM, caches and allocators', () => {
    fc.assert(
      fc.property(fc.array(arb, { minLength: 20, maxLength: 120 }), (cmds) => {
        const a = new Session({ id: 'a', name: 'a', profile: TINY, ...opts });
        for (const cmd of cmds) {
          try {
            a.run(null, cmd);
          } catch (e) {
            if (!(e instanceof IommuError)) throw e; // refusals change nothing and are not in the trace
          }
        }
        // The records as a trace holds them (translations that changed only TLB state are not among them).
        const records = a.takeTrace();
        const want = fingerprint(a);
        for (let i = 0; i < 2; i++) {
          const b = new Session({ id: 'a', name: 'a', profile: TINY, ...opts });
          b.replay(records.map((r) => JSON.parse(JSON.stringify(r))));
          expect(fingerprint(b)).toBe(want);
          b.close();
        }
        a.close();
      }),
      { numRuns: Number(process.env.REPLAY_RUNS ?? 60), seed: Number(process.env.REPLAY_SEED ?? 99) },
    );
  });
});

describe.each(VARIANTS)('property: a refused command changes nothing ($what)', ({ opts, arb }) => {
  it('random command sequences: the state after every refusal equals the state before it', () => {
    const stateOf = (s: Session) => {
      const snap = s.snapshot();
      // The event stream is not state a refusal must leave alone: DMA-debug refusals announce themselves there.
      return JSON.stringify({ ...snap, bus: null, tables: [...s.iommu.domains.values()].map((d) => d.table.dumpTables()) }, (k, v) => (k === 'createdAt' ? undefined : v));
    };
    let refusals = 0;
    fc.assert(
      fc.property(fc.array(arb, { minLength: 20, maxLength: 80 }), (cmds) => {
        const s = new Session({ id: 'a', name: 'a', profile: TINY, ...opts });
        for (const cmd of cmds) {
          const before = stateOf(s);
          try {
            s.run(null, cmd);
          } catch (e) {
            if (!(e instanceof IommuError)) throw e;
            refusals++;
            expect(stateOf(s), `${JSON.stringify(cmd)} → ${e.code}`).toBe(before);
          }
        }
        s.close();
      }),
      { numRuns: Number(process.env.REPLAY_RUNS ?? 40), seed: Number(process.env.REPLAY_SEED ?? 5) },
    );
    expect(refusals).toBeGreaterThan(200);
  });
});
