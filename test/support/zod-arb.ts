/**
 * Inputs for a zod schema, derived from the schema itself: mostly the shapes it accepts (right keys, values inside
 * their bounds, strings matching their patterns) and, at every node, sometimes a value it refuses (a wrong type,
 * one past a bound, a missing or an extra key). For differential tests of two parsers of the same schema.
 */
import fc from 'fast-check';
import type { z } from 'zod';

type Def = { type: string; [k: string]: unknown };
type Check = { check: string; format?: string; pattern?: RegExp; value?: number; inclusive?: boolean; minimum?: number; maximum?: number };

const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;
const checksOf = (d: Def): Check[] => ((d.checks as Array<{ _zod: { def: Check } }> | undefined) ?? []).map((c) => c._zod.def);

/** A value of any JSON type (and undefined): what a wrong field holds. */
const junk: fc.Arbitrary<unknown> = fc.oneof(fc.constantFrom(undefined, null, true, '', '0x', '0x1000', -1, 1.5, 2 ** 53, 'read', 'map'), fc.jsonValue({ maxDepth: 1 }));

function stringArb(d: Def): fc.Arbitrary<string> {
  const cs = checksOf(d);
  const regexes = cs.filter((c) => c.check === 'string_format' && c.format === 'regex').map((c) => c.pattern!);
  const max = cs.find((c) => c.check === 'max_length')?.maximum;
  const min = cs.find((c) => c.check === 'min_length')?.minimum ?? 0;
  const pieces: Array<fc.Arbitrary<string>> = [fc.string({ minLength: min, maxLength: Math.min(max ?? 12, 12) }), fc.string({ unit: 'binary', maxLength: 8 }), fc.base64String({ maxLength: 16 }), fc.constantFrom('0x1000', '0X1F', '4096', '0x00000000000001000', '0x1' + '0'.repeat(13))];
  for (const r of regexes) pieces.push(fc.stringMatching(r));
  if (max !== undefined && max <= 4096) pieces.push(fc.constantFrom('a'.repeat(max), 'a'.repeat(max + 1), 'A'.repeat(max - (max % 4))));
  return fc.oneof(...pieces);
}

function numberArb(d: Def): fc.Arbitrary<number> {
  const cs = checksOf(d);
  const lo = cs.find((c) => c.check === 'greater_than')?.value ?? -5;
  const hi = cs.find((c) => c.check === 'less_than')?.value ?? 2 ** 33;
  return fc.oneof(
    { weight: 6, arbitrary: fc.integer({ min: Math.max(lo, -(2 ** 31)), max: Math.min(hi, 2 ** 40) }) },
    { weight: 1, arbitrary: fc.constantFrom(lo - 1, lo, hi, hi + 1, 0.5, -0, 2 ** 53, Number.MAX_SAFE_INTEGER) },
    { weight: 1, arbitrary: fc.double() },
  );
}

/** Inputs for `schema`: valid ones most of the time, with refused values mixed in at every level. */
export function inputsFor(schema: z.ZodType, depth = 0): fc.Arbitrary<unknown> {
  const d = defOf(schema);
  const valid = ((): fc.Arbitrary<unknown> => {
    switch (d.type) {
      case 'string':
        return stringArb(d);
      case 'number':
        return numberArb(d);
      case 'boolean':
        return fc.boolean();
      case 'null':
        return fc.constant(null);
      case 'unknown':
      case 'any':
        return junk;
      case 'literal':
        return fc.constantFrom(...(d.values as unknown[]));
      case 'enum':
        return fc.constantFrom(...Object.values(d.entries as Record<string, unknown>));
      case 'optional':
      case 'default':
      case 'nonoptional':
        return fc.oneof(inputsFor(d.innerType as z.ZodType, depth), fc.constant(undefined));
      case 'nullable':
        return fc.oneof(inputsFor(d.innerType as z.ZodType, depth), fc.constant(null));
      case 'pipe':
        return inputsFor(d.in as z.ZodType, depth);
      case 'union':
        return fc.oneof(...(d.options as z.ZodType[]).map((o) => inputsFor(o, depth)));
      case 'array': {
        const cs = checksOf(d);
        const max = cs.find((c) => c.check === 'max_length')?.maximum ?? 4;
        return fc.array(inputsFor(d.element as z.ZodType, depth + 1), { maxLength: Math.min(max + 1, depth > 2 ? 2 : 5) });
      }
      case 'record':
        return fc.dictionary(fc.string({ maxLength: 6 }), depth > 2 ? junk : inputsFor(d.valueType as z.ZodType, depth + 1), { maxKeys: 3 });
      case 'object': {
        const shape = d.shape as Record<string, z.ZodType>;
        const fields = Object.fromEntries(Object.entries(shape).map(([k, v]) => [k, inputsFor(v, depth + 1)]));
        const required = Object.keys(shape).filter((k) => !['optional', 'default'].includes(defOf(shape[k]!).type));
        const full = fc.record(fields, { requiredKeys: required });
        const partial = fc.record(fields, { requiredKeys: [] });
        const extra = fc.tuple(full, fc.constantFrom('extra', 'op', '__proto__x', 'constructor'), junk).map(([o, k, v]) => ({ ...o, [k]: v }));
        return fc.oneof({ weight: 6, arbitrary: full }, { weight: 1, arbitrary: partial }, { weight: 1, arbitrary: extra });
      }
      default:
        throw new Error(`inputsFor: no generator for zod type ${d.type}`);
    }
  })();
  return fc.oneof({ weight: 9, arbitrary: valid }, { weight: 1, arbitrary: junk });
}
