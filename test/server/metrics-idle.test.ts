/**
 * A /metrics scrape reads an idle session's counters without building its hardware (issue 16: an idle session
 * stays a few KiB; a scrape per 15 s must not give each of thousands of sessions its SoC).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { build } from '../../src/server/app.js';

type App = Awaited<ReturnType<typeof build>>;
let app: App | null = null;
afterEach(async () => {
  await app?.close();
  app = null;
});

describe('/metrics and idle sessions', () => {
  it('an idle session is counted at zero and keeps its hardware unbuilt', async () => {
    app = await build();
    const s = (await app.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'msm8x60' } })).json();
    const session = app.registry.get(s.id)!;
    expect(session.hardwareBuilt).toBe(false);
    const m = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(session.hardwareBuilt).toBe(false);
    // Same series as a built idle session gives: each of the profile's 12 SMMUs at zero, both pools free.
    expect(m).toContain('iommud_tlb_hits_total{smmu="jpegd"} 0');
    expect(m).toContain('iommud_tlb_misses_total{smmu="gfx2d1"} 0');
    expect(m).toContain('iommud_transactions_total 0');
    expect(m).toContain('iommud_pool_used_bytes{pool="smi"} 0');
    expect(m).toContain('iommud_pool_used_bytes{pool="ebi1"} 0');
  });

  it('a driven session beside an idle one: counters are the driven one\'s', async () => {
    app = await build();
    const idle = (await app.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'msm8x60' } })).json();
    const s = (await app.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'msm8x60' } })).json();
    const auth = { authorization: `Bearer ${s.token}` };
    const buf = await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/buffers`, headers: auth, payload: { size: 0x2000 } });
    expect(buf.statusCode).toBe(201);
    // An access through a context nobody configured: one transaction, and (bypass or fault) one TLB lookup at most.
    const a = await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/devices/jpegd_src/access`, headers: auth, payload: { iova: 0x1000, access: 'read' } });
    expect(a.statusCode).toBe(200);
    const m = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(app.registry.get(idle.id)!.hardwareBuilt).toBe(false);
    expect(m).toContain('iommud_transactions_total 1');
    expect(m).toMatch(/iommud_pool_used_bytes\{pool="(smi|ebi1)"\} 8192/);
  });
});
