import { describe, expect, it } from 'vitest';
import { hashToken } from '../../src/session/session.js';
import { tinySession } from '../support/core.js';

describe('tokens: looked up by a public id, the secret compared in constant time', () => {
  it('a token is <id>.<secret>; the same id with a wrong secret of the same length fails', () => {
    const s = tinySession();
    const { token } = s.mintToken('operator', 'rig');
    expect(token).toMatch(/^[A-Za-z0-9_-]{12}\.[A-Za-z0-9_-]{32}$/);
    expect(s.authenticate(token)).toMatchObject({ role: 'operator', label: 'rig' });
    const [id, secret] = token.split('.') as [string, string];
    const flipped = secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A');
    for (const wrong of [`${id}.${flipped}`, `${id}.`, `${id}.${secret}x`, id, `${id}x.${secret}`, secret]) expect(s.authenticate(wrong), wrong).toBeNull();
  });

  it("a digest lookup key is not an id: '<digest>.<anything>' of a token from an older journal fails, the token itself works", () => {
    const s = tinySession();
    const legacy = 'old-style-token-without-an-id';
    s.replay([{ token: { hash: hashToken(legacy), role: 'observer', label: null } }]);
    expect(s.authenticate(legacy)).toMatchObject({ role: 'observer' });
    expect(s.authenticate(`${hashToken(legacy)}.x`)).toBeNull();
    // A new-style token survives a snapshot with its id.
    const { token } = s.mintToken('owner');
    const t = tinySession();
    t.restoreSnapshot(s.snapshot());
    expect(t.authenticate(token)).toMatchObject({ role: 'owner' });
    expect(t.authenticate(legacy)).toMatchObject({ role: 'observer' });
  });

  it('a token accepted before is refused once a restored snapshot no longer holds it (nothing stale is remembered)', () => {
    const s = tinySession();
    const before = s.snapshot();
    const { token } = s.mintToken('operator');
    for (let i = 0; i < 3; i++) expect(s.authenticate(token)).toMatchObject({ role: 'operator' });
    s.restoreSnapshot(before);
    expect(s.authenticate(token)).toBeNull();
  });
});
