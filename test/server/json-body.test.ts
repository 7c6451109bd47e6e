import fc from 'fast-check';
import Fastify, { type FastifyRequest } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonBodyParser } from '../../src/server/app.js';
import { client, type Client } from '../support/server.js';

const NOT_JSON = "Body is not valid JSON but content-type is set to 'application/json'";

/** The JSON body parser (src/server/app.ts): prototype poisoning and broken JSON refused as Fastify's parser does. */
describe('JSON request bodies', () => {
  let c: Client;
  beforeAll(async () => {
    c = await client('tiny');
  });
  afterAll(() => c.app.close());

  const post = (payload: string) =>
    c.app.inject({ method: 'POST', url: `/v1/sessions/${c.sid}/domains`, headers: { authorization: `Bearer ${c.token}`, 'content-type': 'application/json' }, payload });

  it.each([
    ['__proto__', '{"__proto__":{"label":"x"}}'],
    ['__proto__ nested', '{"label":"a","pgsizes":[4096],"x":{"__proto__":{"polluted":true}}}'],
    ['__proto__ escaped', '{"\\u005f_proto__":{"label":"x"}}'],
    ['__proto__ all escaped', '{"\\u005F\\u005F\\u0070\\u0072\\u006F\\u0074\\u006F\\u005F\\u005F":{}}'],
    ['constructor.prototype', '{"label":"a","constructor":{"prototype":{"polluted":true}}}'],
    ['constructor escaped', '{"\\u0063onstructor":{"prototype":{"polluted":true}}}'],
    ['broken', '{"label":'],
    ['whitespace only', '  '],
    ['BOM then broken', '\ufeff{"label"'],
  ])('%s: 400 BAD_REQUEST, nothing created', async (_name, body) => {
    const before = (await c.call('GET', '/domains')).body.length;
    const r = await post(body);
    expect([r.statusCode, r.json()]).toEqual([400, { error: { code: 'BAD_REQUEST', message: NOT_JSON } }]);
    expect((await c.call('GET', '/domains')).body.length).toBe(before);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it.each([
    ['plain', '{"label":"plain"}', 'plain'],
    ['proto and constructor as text', '{"label":"proto constructor __proto__"}', 'proto constructor __proto__'],
    ['an escape', '{"label":"\\u0041\\u005f"}', 'A_'],
    ['a leading BOM', '\ufeff{"label":"bom"}', 'bom'],
    ['empty: no body', '', null],
  ])('%s: accepted', async (_name, body, label) => {
    const r = await post(body);
    expect(r.statusCode).toBe(201);
    expect(r.json().label).toBe(label);
  });

  it('a constructor key that is not an object with prototype passes the parser and meets the schema', async () => {
    const r = await post('{"constructor":{"a":1}}');
    expect([r.statusCode, r.json().error.message]).toEqual([400, 'invalid body: / Unrecognized key: "constructor"']);
  });
});

describe('jsonBodyParser agrees with Fastify’s default JSON parser', () => {
  const fastifyJson = Fastify().getDefaultJsonParser('error', 'error');
  const req = { headers: { 'content-type': 'application/json' } } as unknown as FastifyRequest;
  const outcome = (parse: typeof fastifyJson, body: string) => {
    let got: unknown = 'not called';
    parse(req, body, (err: Error | null, value?: unknown) => {
      got = err ? { error: (err as Error & { code?: string }).code, message: err.message } : { value };
    });
    return got;
  };
  const ours = jsonBodyParser(fastifyJson);

  // Keys and text that the poisoning checks look at, literal and escaped, beside ordinary ones.
  const key = fc.constantFrom('__proto__', 'constructor', 'prototype', 'label', 'proto', 'a', '\\u005f_proto__', '__pr\\u006fto__', '\\u0063onstructor', 'construc\\u0074or', 'x\\u0041');
  const leaf = fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.string(), key.map((k) => `"${k}"`).map((s) => ({ raw: s })));
  const json: fc.Arbitrary<string> = fc.letrec<{ v: string }>((tie) => ({
    v: fc.oneof(
      { depthSize: 'small' },
      leaf.map((l) => (typeof l === 'object' && l !== null && 'raw' in l ? (l as { raw: string }).raw : JSON.stringify(l))),
      fc.array(tie('v'), { maxLength: 3 }).map((a) => `[${a.join(',')}]`),
      fc.array(fc.tuple(key, fc.constantFrom('', ' ', '\n'), tie('v')), { maxLength: 4 }).map((kv) => `{${kv.map(([k, ws, v]) => `"${k}"${ws}:${v}`).join(',')}}`),
    ),
  })).v;
  const body = fc.oneof(
    json,
    json.map((j) => '\ufeff' + j),
    json.map((j) => ` ${j}\n`),
    fc.tuple(json, fc.nat(40)).map(([j, n]) => j.slice(0, n)),
    fc.string(),
  );

  it('same value or same error on every body', () => {
    fc.assert(
      fc.property(body, (b) => {
        const expected = b.length === 0 ? { value: undefined } : outcome(fastifyJson, b);
        expect(outcome(ours, b)).toEqual(expected);
      }),
      { numRuns: 3000 },
    );
  });

  it('the generator reaches poisoned bodies, refused ones and accepted ones', () => {
    const seen = new Set<string>();
    fc.assert(
      fc.property(body, (b) => {
        const o = outcome(fastifyJson, b) as { error?: string; value?: unknown };
        if (o.error && /"(__proto__|constructor)"\s*:/.test(b)) seen.add('poisoned');
        else if (o.error) seen.add('refused');
        else seen.add('accepted');
      }),
      { numRuns: 3000 },
    );
    expect([...seen].sort()).toEqual(['accepted', 'poisoned', 'refused']);
  });
});
