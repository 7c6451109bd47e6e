import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/server/app.js';
import { errorStatuses } from '../../src/server/openapi.js';

type Op = { responses: Record<string, { description: string; content?: Record<string, { schema: Record<string, unknown> }> }>; description?: string };

describe('OpenAPI: error responses, 204s, examples, WebSockets', () => {
  let app: FastifyInstance;
  let doc: { paths: Record<string, Record<string, Op>> };
  beforeAll(async () => {
    app = await build();
    await app.ready();
    doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json();
  });
  afterAll(() => app.close());

  const op = (path: string, method: string) => doc.paths[path]![method]!;
  const codes = (path: string, method: string) => Object.keys(op(path, method).responses).sort();

  it('each route lists the refusals it can give, with the error schema', () => {
    expect(codes('/v1/sessions/{sid}/domains/{did}/map', 'post')).toEqual(['200', '400', '401', '403', '404', '409', '413', '415', '429', '503', '507']);
    expect(codes('/v1/sessions/{sid}/domains', 'get')).toEqual(['200', '401', '403', '404', '429']);
    expect(codes('/v1/sessions/{sid}/domains/{did}/iova-to-phys/{iova}', 'get')).toEqual(['200', '400', '401', '403', '404', '429']);
    expect(codes('/v1/sessions', 'post')).toEqual(['201', '400', '413', '415', '429', '503']);
    expect(codes('/health', 'get')).toEqual(['200']);
    const err = op('/v1/sessions/{sid}/domains/{did}/map', 'post').responses['409']!;
    expect(err.description).toContain('ALREADY_MAPPED');
    const schema = err.content!['application/json']!.schema as { properties: { error: { required: string[] } } };
    expect(schema.properties.error.required).toEqual(['code', 'message']);
    // Every session route answers 401 and every error response carries the error schema.
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, o] of Object.entries(ops)) {
        if (path.startsWith('/v1/sessions/{sid}')) expect(Object.keys(o.responses), `${method} ${path}`).toContain('401');
        for (const [status, r] of Object.entries(o.responses)) {
          if (Number(status) >= 400) expect(r.content?.['application/json']?.schema, `${method} ${path} ${status}`).toHaveProperty('properties.error');
        }
      }
    }
  });

  it('the status sets follow the route: mutations conflict and need the journal, GETs do not', () => {
    expect(errorStatuses({ method: 'GET', url: '/v1/sessions/:sid/pools', schema: {} })).toEqual([401, 403, 404, 429]);
    expect(errorStatuses({ method: 'POST', url: '/v1/sessions/:sid/buffers', schema: { body: {} } })).toEqual([400, 401, 403, 404, 409, 413, 415, 429, 503, 507]);
  });

  it('204 routes are documented as 204 with no body', () => {
    for (const [path, method] of [
      ['/v1/sessions/{sid}/', 'delete'],
      ['/v1/sessions/{sid}/domains/{did}', 'delete'],
      ['/v1/sessions/{sid}/buffers/{paddr}', 'delete'],
      ['/v1/sessions/{sid}/memory', 'put'],
      ['/v1/sessions/{sid}/devices/{device}/dma/unmap', 'post'],
      ['/v1/sessions/{sid}/devices/{device}/dma/sync', 'post'],
    ] as const) {
      const r = op(path, method).responses;
      expect(Object.keys(r), `${method} ${path}`).toContain('204');
      expect(Object.keys(r), `${method} ${path}`).not.toContain('200');
    }
  });

  it('examples are valid requests: addresses show as hex strings, never 2^53-1', () => {
    const text = JSON.stringify(doc);
    const map = op('/v1/sessions/{sid}/domains/{did}/map', 'post') as unknown as { requestBody: { content: { 'application/json': { schema: { properties: Record<string, { anyOf: Array<{ example?: unknown; type: string }> }> } } } } };
    const iova = map.requestBody.content['application/json'].schema.properties.iova!;
    expect(iova.anyOf[0]).toMatchObject({ type: 'string', example: '0x10000000' });
    expect(text).not.toMatch(/"example":\s*9007199254740991/);
  });

  it('WebSocket routes are described as such, with their 101', () => {
    for (const path of ['/v1/sessions/{sid}/events', '/v1/sessions/{sid}/devices/{device}/stream']) {
      const o = op(path, 'get');
      expect(o.description, path).toMatch(/^WebSocket \(GET with Upgrade: websocket; \?token= instead of a bearer header\)/);
      expect(Object.keys(o.responses), path).toEqual(expect.arrayContaining(['101', '401']));
    }
  });
});
