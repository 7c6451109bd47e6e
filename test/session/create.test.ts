/**
 * Session creation (issue 16, sessions-create): a session builds its hardware on first use and keeps token digests
 * as hex text — and answers exactly as a session whose hardware was built when it was created.
 */
import { describe, expect, it } from 'vitest';
import { IommuError } from '../../src/errors.js';
import { TINY } from '../../src/hw/profile.js';
import { RamLedger, Session, SessionRegistry, hashToken } from '../../src/session/session.js';
import type { Command } from '../../src/session/commands.js';
import { tinySession } from '../support/core.js';

/** A session whose hardware was built at creation, as every session's was before it became lazy. */
function eagerSession(): Session {
  const s = tinySession();
  void s.soc.smmus;
  void s.iommu;
  void s.dma;
  void s.pools;
  return s;
}

/** Runs cmd, answering whether it was applied or the refusal's code (what it did shows in events and snapshots). */
function outcome(s: Session, cmd: unknown): unknown {
  try {
    s.run(null, cmd as Command);
    return 'applied';
  } catch (e) {
    if (e instanceof IommuError) return { refused: e.code };
    throw e;
  }
}

describe('session hardware built on first use', () => {
  const commands: unknown[] = [
    // Through a context nobody configured (a fault or not, as the hardware decides), then a domain, a mapping and
    // accesses inside and outside it, a DMA mapping, and refusals.
    { op: 'access', device: 'dev0', iova: 0x10, access: 'read' },
    { op: 'domain-alloc' },
    { op: 'attach', did: 'dom-1', device: 'dev0' },
    { op: 'map', did: 'dom-1', iova: 0x40000000, paddr: 0x80000000, size: 4096, prot: ['read'] },
    { op: 'access', device: 'dev0', iova: 0x40000010, access: 'read' },
    { op: 'access', device: 'dev0', iova: 0x40000010, access: 'write', data: 'AAAA' },
    { op: 'access', device: 'dev0', iova: 0x50000000, access: 'read' },
    { op: 'dma-map', device: 'dev1', paddr: 0x80100000, size: 4096, dir: 'to-device' },
    { op: 'map', did: 'dom-9', iova: 0, paddr: 0x80000000, size: 4096, prot: ['read'] },
    { op: 'access', device: 'nodev', iova: 0, access: 'read' },
  ];

  it('a session first driven after creation gives the same results, events, counts and snapshot as one built at creation', () => {
    const lazy = tinySession();
    const eager = eagerSession();
    for (const cmd of commands) expect(outcome(lazy, cmd), JSON.stringify(cmd)).toEqual(outcome(eager, cmd));
    expect([...lazy.faultCounts]).toEqual([...eager.faultCounts]);
    expect([...lazy.faultCounts].length).toBeGreaterThan(0);
    expect([...lazy.coherencyCounts]).toEqual([...eager.coherencyCounts]);
    const events = (x: Session) => x.bus.replay(0).events.map(({ time: _, ...ev }) => ev);
    expect(events(lazy)).toEqual(events(eager));
    expect(events(lazy).length).toBeGreaterThan(3);
    // The bus's snapshot holds event times: its events are compared above, without them.
    const state = (x: Session) => ({ ...x.snapshot(), bus: null });
    expect(state(lazy)).toEqual(state(eager));
  });

  it('a session never driven: no faults, zero coherency counts, a snapshot equal to a built one, RAM ledger untouched by its close', () => {
    const ledger = new RamLedger(1 << 30);
    ledger.held = 65536;
    const s = new Session({ id: 's-idle', name: 'idle', profile: TINY, ram: { perSession: 1 << 20, ledger } });
    expect([...s.faultCounts]).toEqual([]);
    expect(Object.fromEntries(s.coherencyCounts)).toEqual({ 'stale-cpu-read': 0, 'device-read-stale': 0, 'lost-device-write': 0, 'cpu-access-device-owned': 0 });
    s.close();
    expect(ledger.held).toBe(65536);
    expect(tinySession().snapshot()).toEqual(eagerSession().snapshot());
    expect(s.bus.lastSeq).toBe(0);
  });

  it('a bad bounce pool or CPU cache is still refused at creation, and the registry keeps no session', async () => {
    const reg = new SessionRegistry();
    await expect(reg.create({ name: 'x', profile: TINY, bounce: { paddr: 0x80000001, size: 4096 } })).rejects.toMatchObject({ code: 'UNALIGNED' });
    await expect(reg.create({ name: 'x', profile: TINY, cpuCache: { lineSize: 3 } })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    expect(reg.sessions.size).toBe(0);
  });
});

describe('token digests kept as hex text', () => {
  it('a stored digest in upper case still authenticates its token (with and without an id); one that is not 64 hex digits matches nothing', () => {
    const s = tinySession();
    const token = 'AAAAAAAAAAAA.' + 'b'.repeat(32);
    const legacy = 'legacy-token';
    const bad = 'bad-token';
    s.replay([
      { token: { id: 'AAAAAAAAAAAA', hash: hashToken(token).toUpperCase(), role: 'operator', label: 'rig' } },
      { token: { hash: hashToken(legacy), role: 'observer', label: null } },
      { token: { id: 'CCCCCCCCCCCC', hash: hashToken('CCCCCCCCCCCC.x').slice(1), role: 'owner', label: null } },
      { token: { id: 'DDDDDDDDDDDD', hash: `${hashToken(bad).slice(2)}zz`, role: 'owner', label: null } },
    ]);
    expect(s.authenticate(token)).toMatchObject({ role: 'operator', label: 'rig' });
    expect(s.authenticate(token)).toMatchObject({ role: 'operator', label: 'rig' });
    expect(s.authenticate(legacy)).toMatchObject({ role: 'observer' });
    expect(s.authenticate('CCCCCCCCCCCC.x')).toBeNull();
    expect(s.authenticate(`DDDDDDDDDDDD.${bad}`)).toBeNull();
    expect(s.authenticate('AAAAAAAAAAAA.' + 'c'.repeat(32))).toBeNull();
  });

  it('hashToken is the SHA-256 of the token as lower-case hex; a minted token authenticates and its digest is what the journal keeps', () => {
    expect(hashToken('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    const s = tinySession();
    const { token } = s.mintToken('owner', 'me');
    expect(s.authenticate(token)).toMatchObject({ role: 'owner', label: 'me' });
    expect(s.snapshot().tokens).toEqual([{ id: token.split('.')[0], hash: hashToken(token), role: 'owner', label: 'me' }]);
  });
});
