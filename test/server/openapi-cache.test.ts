import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/server/app.js';

type Schema = { type?: string; enum?: string[]; properties?: Record<string, Schema>; items?: Schema; anyOf?: Schema[]; nullable?: boolean };
type Op = { parameters?: Array<{ in: string; name: string; required: boolean; schema: Schema }>; requestBody?: { content: Record<string, { schema: Schema }> }; responses: Record<string, { content?: Record<string, { schema: Schema }> }> };

/** Issue 14: the OpenAPI document covers the non-coherent surface (cache routes, view=ram, DMA mode, session settings). */
describe('OpenAPI: the CPU cache, direct-mode DMA and bounce buffers', () => {
  let app: Awaited<ReturnType<typeof build>>;
  let paths: Record<string, Record<string, Op>>;
  beforeAll(async () => {
    app = await build();
    await app.ready();
    paths = (await app.inject({ method: 'GET', url: '/docs/json' })).json().paths;
  });
  afterAll(() => app.close());
  const json = (o: { content?: Record<string, { schema: Schema }> } | undefined) => o!.content!['application/json']!.schema;

  it('documents the cache routes, the memory view, the DMA mode and view, and the session settings', () => {
    expect(Object.keys(paths['/v1/sessions/{sid}/cache']!)).toEqual(['get']);
    const cache = paths['/v1/sessions/{sid}/cache']!.get!;
    expect(cache.parameters!.filter((p) => p.in === 'query').map((p) => [p.name, p.required])).toEqual([['paddr', false], ['size', false]]);
    expect(Object.keys(json(cache.responses['200']).properties!)).toEqual(['lineSize', 'lines', 'used', 'entries']);
    expect(Object.keys(json(cache.responses['200']).properties!.entries!.items!.properties!)).toEqual(['paddr', 'dirty']);
    for (const action of ['clean', 'invalidate', 'flush']) {
      const op = paths[`/v1/sessions/{sid}/cache/${action}`]!.post!;
      expect(Object.keys(json(op.requestBody).properties!), action).toEqual(['paddr', 'size']);
      expect(Object.keys(json(op.responses['200']).properties!), action).toEqual(['lines']);
    }
    const view = paths['/v1/sessions/{sid}/memory']!.get!.parameters!.find((p) => p.name === 'view')!;
    expect([view.required, view.schema.enum]).toEqual([false, ['cpu', 'ram']]);
    const dma = paths['/v1/sessions/{sid}/devices/{device}/dma']!;
    expect(json(dma.patch!.requestBody).properties!.mode!.enum).toEqual(['iommu', 'direct']);
    const mapping = json(dma.get!.responses['200']).properties!.mappings!.items!.properties!;
    expect(mapping.owner!.enum).toEqual(['cpu', 'device']);
    expect(Object.keys(mapping.bounce!.properties!)).toEqual(['paddr', 'slots']);
    const create = json(paths['/v1/sessions']!.post!.requestBody).properties!;
    expect(Object.keys(create.cpuCache!.properties!)).toEqual(['lineSize', 'lines', 'coherent']);
    expect(Object.keys(create.bounce!.properties!)).toEqual(['paddr', 'size']);
  });
});
