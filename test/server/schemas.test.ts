import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { jsonSchemas } from '../../src/api/json-schemas.js';
import { FaultOut } from '../../src/api/schemas.js';
import { Event, FaultCommon, GartFault, MsmFault, OmapFault } from '../../src/events/types.js';
import { build } from '../../src/server/app.js';

describe('schemas and OpenAPI', () => {
  it('schemas/ matches the zod schemas (run `npm run schemas` when this fails)', () => {
    const want = jsonSchemas();
    const dir = new URL('../../schemas/', import.meta.url);
    const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
    expect(files).toEqual(Object.keys(want).map((n) => `${n}.json`).sort());
    for (const [name, schema] of Object.entries(want)) {
      expect(JSON.parse(readFileSync(new URL(`${name}.json`, dir), 'utf8')), name).toEqual(schema);
    }
  });

  it('FaultOut is the fault event of every family: their fields, the common ones required, plus the stamp', () => {
    const families = [MsmFault, OmapFault, GartFault];
    const keys = new Set(['seq', 'time', ...families.flatMap((f) => Object.keys(f.shape))]);
    expect(new Set(Object.keys(FaultOut.shape))).toEqual(keys);
    const required = Object.entries(FaultOut.shape).filter(([, v]) => !v.safeParse(undefined).success).map(([k]) => k);
    expect(required.sort()).toEqual(Object.keys(FaultCommon.shape).sort());
    // A fault event of each family, without the bus's type and by, is a valid fault object.
    const common = { smmu: 's', context: 0, device: 'd', domain: null, iova: '0x1000', access: 'read', priv: false, flags: 0, kind: 'translation' };
    const faults = [
      { ...common, family: 'msm', fsr: '0x2', fsrBits: ['TF'], far: '0x1000', fsynr0: '0x0', fsynr1: '0x0' },
      { ...common, family: 'omap', irqstatus: '0x2', irqstatusBits: ['TRANSLATIONFAULT'], faultAd: '0x1000' },
      { ...common, family: 'gart', intstatus: '0x1', errorReq: '0x0', errorAddr: '0x1000', client: { id: 0x12, name: 'host1x' } },
    ];
    for (const f of faults) {
      expect(Event.safeParse({ type: 'fault', seq: 1, time: '2026-01-01T00:00:00.000Z', ...f }).success).toBe(true);
      expect(FaultOut.safeParse({ seq: 1, time: '2026-01-01T00:00:00.000Z', ...f }).success).toBe(true);
    }
  });

  it('the OpenAPI document lists every route, and /docs serves the UI', async () => {
    const app = await build();
    await app.ready();
    const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json();
    expect(doc.openapi).toBe('3.0.3');
    const paths = Object.keys(doc.paths);
    for (const p of [
      '/health', '/v1/version', '/v1/profiles', '/v1/sessions', '/v1/sessions/{sid}/', '/v1/sessions/{sid}/tokens', '/v1/sessions/{sid}/smmus',
      '/v1/sessions/{sid}/smmus/{smmu}/contexts/{ctx}', '/v1/sessions/{sid}/smmus/{smmu}/contexts/{ctx}/clear-fault', '/v1/sessions/{sid}/smmus/{smmu}/contexts/{ctx}/resume',
      '/v1/sessions/{sid}/smmus/{smmu}/mmio/{offset}', '/v1/sessions/{sid}/smmus/{smmu}/mmio', '/v1/sessions/{sid}/smmus/{smmu}/masters/{mid}/access',
      '/v1/sessions/{sid}/domains', '/v1/sessions/{sid}/domains/{did}', '/v1/sessions/{sid}/domains/{did}/attach', '/v1/sessions/{sid}/domains/{did}/detach',
      '/v1/sessions/{sid}/domains/{did}/map', '/v1/sessions/{sid}/domains/{did}/unmap', '/v1/sessions/{sid}/domains/{did}/batch', '/v1/sessions/{sid}/domains/{did}/mappings',
      '/v1/sessions/{sid}/domains/{did}/iova-to-phys/{iova}', '/v1/sessions/{sid}/domains/{did}/pagetable', '/v1/sessions/{sid}/domains/{did}/flush', '/v1/sessions/{sid}/domains/{did}/sync',
      '/v1/sessions/{sid}/devices/{device}/access', '/v1/sessions/{sid}/devices/{device}/access-batch', '/v1/sessions/{sid}/events', '/metrics',
      '/v1/sessions/{sid}/buffers', '/v1/sessions/{sid}/buffers/{paddr}', '/v1/sessions/{sid}/memory', '/v1/sessions/{sid}/pools',
      '/v1/sessions/{sid}/devices/{device}/dma', '/v1/sessions/{sid}/devices/{device}/dma/map', '/v1/sessions/{sid}/devices/{device}/dma/map-sg',
      '/v1/sessions/{sid}/devices/{device}/dma/unmap', '/v1/sessions/{sid}/devices/{device}/dma/sync',
    ]) expect(paths, p).toContain(p);
    expect(doc.paths['/v1/sessions/{sid}/domains/{did}/map'].post.requestBody.content['application/json'].schema.required).toEqual(['iova', 'paddr', 'size', 'prot']);
    const ui = await app.inject({ method: 'GET', url: '/docs/' });
    expect(ui.statusCode).toBe(200);
    expect(ui.headers['content-type']).toContain('text/html');
    await app.close();
  });

  it('/metrics is Prometheus text with request and TLB series', async () => {
    const app = await build();
    const s = (await app.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'tiny' } })).json();
    await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/devices/dev0/access`, headers: { authorization: `Bearer ${s.token}` }, payload: { iova: 0, access: 'read' } });
    const m = await app.inject({ method: 'GET', url: '/metrics' });
    expect(m.headers['content-type']).toContain('text/plain');
    expect(m.body).toContain('iommud_http_requests_total{route="/v1/sessions",method="POST",status="201"} 1');
    expect(m.body).toContain('iommud_transactions_total 1');
    expect(m.body).toContain('iommud_tlb_hits_total{smmu="smmu0"} 0');
    expect(m.body).toContain('iommud_sessions 1');
    await app.close();
  });

  it('/metrics names no session (it needs no token); running totals are counters named _total and survive a delete', async () => {
    const app = await build();
    const mk = async () => (await app.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'tiny' } })).json();
    const [a, b] = [await mk(), await mk()];
    for (const s of [a, a, b]) await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/devices/dev0/access`, headers: { authorization: `Bearer ${s.token}` }, payload: { iova: 0, access: 'read' } });
    let m = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(m).not.toContain(a.id);
    expect(m).not.toContain(b.id);
    expect(m).not.toMatch(/session="/);
    expect(m).toContain('iommud_transactions_total 3');
    expect(m).toContain('# TYPE iommud_transactions_total counter');
    expect(m).toContain('iommud_tlb_misses_total{smmu="smmu0"} 0'); // bypass: no context attached
    // Every counter is named _total; nothing that counts up is a gauge.
    const types = [...m.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map(([, name, type]) => [name!, type!] as const);
    for (const [name, type] of types) if (type === 'counter') expect(name).toMatch(/_total$/);
    expect(types.filter(([, t]) => t === 'gauge').map(([n]) => n).sort()).toEqual(['iommud_journal_failed_sessions', 'iommud_pool_used_bytes', 'iommud_sessions', 'iommud_subscribers']);
    // A deleted session's transactions stay counted: a counter never goes down.
    await app.inject({ method: 'DELETE', url: `/v1/sessions/${a.id}`, headers: { authorization: `Bearer ${a.token}` } });
    m = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(m).toContain('iommud_transactions_total 3');
    expect(m).toContain('iommud_sessions 1');
    await app.close();
  });
});

describe('OpenAPI summaries', () => {
  it('every documented operation has a summary', async () => {
    const app = await build();
    await app.ready();
    const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json();
    const missing: string[] = [];
    for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, { summary?: string }>>)) {
      for (const [method, op] of Object.entries(ops)) if (!op.summary) missing.push(`${method.toUpperCase()} ${path}`);
    }
    expect(missing).toEqual([]);
    await app.close();
  });
});
