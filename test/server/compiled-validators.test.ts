/**
 * Routes and the command gate check inputs with zod's compiled form of their schemas (z.compile: generated code,
 * zod's parser for whatever that code does not take). The compiled form must accept, produce and refuse exactly
 * what the plain schema does, issues included: random inputs derived from each schema, valid and not, both ways.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { validatorCompiler } from 'fastify-type-provider-zod';
import { compiledValidatorCompiler } from '../../src/server/app.js';
import * as S from '../../src/api/schemas.js';
import { CommandSchema } from '../../src/session/commands.js';
import { inputsFor } from '../support/zod-arb.js';

/** Every request schema a route validates (bodies, queries, path parameters) and the command gate's. */
const REQUESTS: Record<string, z.ZodType> = {
  ...Object.fromEntries(Object.entries(S.SCHEMAS).filter(([name]) => /Body$|^Topology$/.test(name))),
  MappingsQuery: S.MappingsQuery,
  PageQuery: S.PageQuery,
  MemoryQuery: S.MemoryQuery,
  CacheQuery: S.CacheQuery,
  EventsQuery: S.EventsQuery,
  DomParams: z.object({ sid: z.string(), did: z.string() }),
  IovaParams: z.object({ sid: z.string(), did: z.string(), iova: S.ParamAddr }),
  CommandSchema,
};

function agree(schema: z.ZodType, compiled: z.ZodType, input: unknown): boolean {
  const want = schema.safeParse(input);
  const got = compiled.safeParse(input);
  expect(got.success, JSON.stringify(input)).toBe(want.success);
  if (want.success) expect(got.data).toStrictEqual(want.data);
  else expect(got.error!.issues).toStrictEqual(want.error!.issues);
  return want.success;
}

describe('z.compile: the compiled validators agree with their zod schemas', () => {
  it('the hot routes and the command gate compile (no silent fallback to the plain parser)', () => {
    for (const s of [S.MapBody, S.UnmapBody, S.AccessBody, S.BatchBody, S.AccessBatchBody, CommandSchema]) expect(() => z.compile(s, { strict: true })).not.toThrow();
  });

  for (const [name, schema] of Object.entries(REQUESTS)) {
    it(`${name}: same result, data and issues on random valid and invalid inputs`, () => {
      const compiled = z.compile(schema);
      let accepted = 0;
      let runs = 0;
      fc.assert(
        fc.property(inputsFor(schema), (input) => {
          runs++;
          if (agree(schema, compiled, input)) accepted++;
        }),
        { numRuns: 400, seed: 16 },
      );
      // Both sides of the contract were exercised (Topology's nested bounds make valid inputs rare: refusals still count).
      expect(runs - accepted).toBeGreaterThan(0);
      if (name !== 'Topology') expect(accepted).toBeGreaterThan(0);
    });
  }

  it('pinned cases for the hot bodies: hex and integer addresses, bounds, extra keys, wrong types', () => {
    const cases: Array<[z.ZodType, unknown]> = [
      [S.MapBody, { iova: '0x1000', paddr: 0x80000000, size: 4096, prot: ['read', 'write'] }],
      [S.MapBody, { iova: '0X1000', paddr: '0x0000000000000080000000', size: '0x1000', prot: [] }],
      [S.MapBody, { iova: '0x10000000000000', paddr: 1, size: 1, prot: ['read'] }],
      [S.MapBody, { iova: '4096', paddr: 1, size: 1, prot: ['read'] }],
      [S.MapBody, { iova: -1, paddr: 1.5, size: 2 ** 53, prot: ['x'] }],
      [S.MapBody, { iova: 0, paddr: 0, size: 0, prot: ['read'], extra: 1 }],
      [S.UnmapBody, { iova: 4096, size: 4096 }],
      [S.UnmapBody, { iova: 4096 }],
      [S.UnmapBody, null],
      [S.AccessBody, { iova: '0x40000010', access: 'read' }],
      [S.AccessBody, { iova: '0x40000010', access: 'write', data: 'AAAA', size: 3, priv: true, mid: 255 }],
      [S.AccessBody, { iova: '0x40000010', access: 'write', data: 'AAA', mid: 256, size: 0 }],
      [S.AccessBody, { iova: 1, access: 'fly' }],
      [CommandSchema, { op: 'map', did: 'd1', iova: 4096, paddr: 0x80000000, size: 4096, prot: ['read'] }],
      [CommandSchema, { op: 'access', device: 'dev0', iova: 0x40000010, access: 'read', data: 'A===' }],
      [CommandSchema, { op: 'nope' }],
      [CommandSchema, { op: 'unmap', did: 'x'.repeat(1025), iova: 0, size: 1 }],
    ];
    for (const [schema, input] of cases) agree(schema, z.compile(schema), input);
  });

  it("the routes' validator answers what the type provider's validator of the plain schema answers: value or errors", () => {
    for (const [name, schema] of Object.entries(REQUESTS)) {
      if (name === 'CommandSchema') continue;
      const route = { schema, method: 'POST', url: '/x', httpPart: 'body' };
      const ours = compiledValidatorCompiler(route);
      const theirs = validatorCompiler(route);
      fc.assert(
        fc.property(inputsFor(schema), (input) => {
          expect(ours(input)).toStrictEqual(theirs(input));
        }),
        { numRuns: 200, seed: 16 },
      );
    }
  });
});
