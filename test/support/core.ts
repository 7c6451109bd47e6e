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
