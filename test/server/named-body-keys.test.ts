import { describe, expect, it } from 'vitest';
import * as S from '../../src/api/schemas.js';

// The map, unmap and access routes build their command from the body's keys named one by one (one object shape per
// command, no spread; src/server/routes/domains.ts and devices.ts). A key added to one of these schemas would be
// dropped there without a word: this fails first, so the route names it too.
describe('bodies whose keys the routes name one by one', () => {
  it('MapBody is iova, paddr, size, prot (the map route names each)', () => {
    expect(Object.keys(S.MapBody.shape)).toEqual(['iova', 'paddr', 'size', 'prot']);
  });
  it('UnmapBody is iova, size (the unmap route names each)', () => {
    expect(Object.keys(S.UnmapBody.shape)).toEqual(['iova', 'size']);
  });
  it('AccessBody is iova and access, with priv, mid, size and data the access route tests for before its literal', () => {
    expect(Object.keys(S.AccessBody.shape)).toEqual(['iova', 'access', 'priv', 'mid', 'size', 'data']);
  });
});
