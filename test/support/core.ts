import { MsmSmmu } from '../../src/hw/msm/index.js';
import type { ContextBank } from '../../src/hw/context.js';
import type { Domain } from '../../src/iommu/domain.js';
import type { V7sTable } from '../../src/pgtable/v7s.js';
import { Session } from '../../src/session/session.js';
import { TINY, MSM8X60, type Profile } from '../../src/hw/profile.js';
import { IommuError } from '../../src/errors.js';

export function tinySession(opts: { tlbEntries?: number; profile?: Profile; tlbPolicy?: 'lru' | 'round-robin' | 'flush-all' } = {}): Session {
  return new Session({ id: 's-test', name: 'test', profile: opts.profile ?? TINY, tlbEntries: opts.tlbEntries, tlbPolicy: opts.tlbPolicy });
}

export function msmSession(): Session {
  return new Session({ id: 's-msm', name: 'msm', profile: MSM8X60 });
}

/** The IommuError code fn throws (fails the test if it does not throw one). */
export function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof IommuError) return e.code;
    throw e;
  }
  throw new Error('expected an IommuError');
}

/** A device of an msm SMMU with its concrete types (tests read the MSM registers directly). */
export function msmDevice(s: Session, name: string): { name: string; smmu: MsmSmmu; bank: ContextBank } {
  const d = s.soc.device(name);
  if (!(d.smmu instanceof MsmSmmu)) throw new Error(`${name} is not behind an msm SMMU`);
  return { name, smmu: d.smmu, bank: d.bank as ContextBank };
}

/** An msm domain's ARMv7 short-descriptor table. */
export function v7s(d: Domain): V7sTable {
  return d.table as V7sTable;
}
