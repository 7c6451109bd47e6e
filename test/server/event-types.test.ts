import { afterAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { z } from 'zod';
import { Event, EVENT_TYPES, GapMessage, SocketErrorMessage } from '../../src/events/types.js';
import { build } from '../../src/server/app.js';
import { client, type Client } from '../support/server.js';
import { until } from '../support/wait.js';

/**
 * Every declared event type, and every variant of one (fault per family, dma-debug per check, actions), as
 * `type` or `type/discriminator=value`: read from the declaration itself, so a new type needs a scenario step.
 */
function variants(u: z.ZodType, type?: string): string[] {
  if (u instanceof z.ZodDiscriminatedUnion) {
    const d = u.def.discriminator;
    return (u.options as z.ZodType[]).flatMap((o) => {
      if (o instanceof z.ZodDiscriminatedUnion) return variants(o, type);
      const shape = (o as z.ZodObject).shape;
      const t = type ?? (shape.type as z.ZodLiteral<string>).value;
      if (d === 'type') return [t];
      const v = shape[d]!;
      const values = v instanceof z.ZodLiteral ? [...v.values] : (v as z.ZodEnum).options;
      return values.map((x) => `${t}/${d}=${String(x)}`);
    });
  }
  return [];
}

const h = (n: number) => `0x${n.toString(16)}`;

/** One SoC with the three families: a camera and a JPEG encoder on an MSM SMMU, a DSP on OMAP, 2D on a GART. */
const SOC = {
  name: 'every-event',
  smmus: [
    { name: 'cam_smmu', family: 'msm', base: '0x07900000', banks: 2, contexts: [{ index: 0, name: 'camera', mids: [2] }, { index: 1, name: 'jpeg', mids: [3] }] },
    { name: 'mmu_dsp', family: 'omap', base: '0x4a066000', contexts: [{ index: 0, name: 'dsp', mids: [0] }] },
    { name: 'gart', family: 'gart', base: '0x7000f000', aperture: { base: '0x58000000', size: '0x2000000' }, contexts: [{ index: 0, name: 'gr2d', mids: [0x11, 0x28] }] },
  ],
  memory: [{ name: 'ram', base: '0x10000000', size: '0x4000000', priority: 0 }],
  pagetablePool: { base: '0x13e00000', size: '0x200000' },
};
const BOUNCE = 0x10000000; // the bounce pool: the bottom 64 KiB of RAM, below the JPEG encoder's DMA mask
const JPEG_LIMIT = 0x1000ffff;

describe('events: the one declaration (src/events/types.ts) describes every message of the events socket', () => {
  let c: Client;
  afterAll(() => c?.app.close());

  it('a mixed-SoC scenario emits every declared type and variant; each message parses strictly (no unknown field)', async () => {
    c = await client(SOC, {}, { cpuCache: { lineSize: 32, lines: 256 }, bounce: { paddr: h(BOUNCE), size: 0x10000 } });
    const addr = await c.app.listen({ port: 0, host: '127.0.0.1' });
    const op = (await c.call('POST', '/tokens', { role: 'operator', label: 'rig' })).body.token as string;
    // since=0: the retained events from the session's creation on.
    const ws = new WebSocket(`${addr.replace('http', 'ws')}/v1/sessions/${c.sid}/events?token=${op}&since=0`);
    const msgs: unknown[] = [];
    ws.on('message', (m) => msgs.push(JSON.parse(String(m))));
    const closed = new Promise<number>((res) => ws.once('close', (code) => res(code)));
    await new Promise<void>((res, rej) => {
      ws.once('open', () => res());
      ws.once('error', rej);
    });
    const ok = async (method: string, url: string, body?: unknown, status = [200, 201, 204]) => {
      const r = await c.call(method, url, body, op);
      if (!status.includes(r.status)) throw new Error(`${method} ${url}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body;
    };
    const refused = async (method: string, url: string, body: unknown, check: string) => {
      const r = await c.call(method, url, body, op);
      expect([r.status, r.body.error.code, r.body.error.details.check], `${method} ${url}`).toEqual([409, 'DMA_DEBUG', check]);
    };
    const put = async (paddr: number, data: string) => {
      const r = await c.app.inject({ method: 'PUT', url: `/v1/sessions/${c.sid}/memory?paddr=${h(paddr)}`, headers: { authorization: `Bearer ${op}`, 'content-type': 'application/octet-stream' }, payload: Buffer.from(data) });
      expect(r.statusCode).toBe(204);
    };

    // Buffers and a CPU store (memory, buffer).
    const frame = (await ok('POST', '/buffers', { size: 0x10000 })).paddr as string;
    const scratch = (await ok('POST', '/buffers', { size: 0x1000 })).paddr as string;
    await ok('DELETE', `/buffers/${scratch}`);

    // msm: a deferred domain, attach, map, a TLB fill, unmap without sync, remap: the stale entry is caught.
    const cam = (await ok('POST', '/domains', { for: 'camera', flushPolicy: 'deferred' })).id as string;
    await ok('POST', `/domains/${cam}/attach`, { device: 'camera' });
    await ok('POST', `/domains/${cam}/map`, { iova: '0x20000000', paddr: frame, size: 0x1000, prot: ['read', 'write'] });
    expect((await ok('POST', '/devices/camera/access', { iova: '0x20000010', access: 'read' })).tlb).toBe('miss');
    await ok('POST', `/domains/${cam}/unmap`, { iova: '0x20000000', size: 0x1000 });
    await ok('POST', `/domains/${cam}/map`, { iova: '0x20000000', paddr: h(Number(frame) + 0x1000), size: 0x1000, prot: ['read'] });
    expect((await ok('POST', '/devices/camera/access', { iova: '0x20000010', access: 'read' })).stale).toBe(true);
    await ok('POST', `/domains/${cam}/sync`);
    await ok('POST', `/domains/${cam}/flush`, { iova: '0x20000000', size: 0x1000 });

    // A CPU store the device then reads around (coherency: device-read-stale), and cache maintenance.
    await put(Number(frame) + 0x1000, 'cpu bytes');
    expect((await ok('POST', '/devices/camera/access', { iova: '0x20000000', access: 'read', size: 16 })).outcome).toBe('ok');
    await ok('POST', '/cache/clean', { paddr: h(Number(frame) + 0x1000), size: 32 });

    // Faults with the msm registers; the context's settings, a cleared FSR, an injected fault.
    expect((await ok('POST', '/devices/camera/access', { iova: '0x30000000', access: 'write' })).outcome).toBe('fault');
    await ok('POST', '/smmus/cam_smmu/contexts/camera/clear-fault', {});
    await ok('POST', '/smmus/cam_smmu/contexts/camera/inject-fault', { kind: 'external' });
    await ok('POST', '/devices/camera/access', { iova: '0x20000000', access: 'read' });
    await ok('POST', '/smmus/cam_smmu/contexts/camera/clear-fault', {});

    // Stall mode: a stalled transaction, resumed over the events socket once the page is mapped.
    await ok('PATCH', '/smmus/cam_smmu/contexts/camera', { faultMode: 'stall' });
    const stalled = await ok('POST', '/devices/camera/access', { iova: '0x21000000', access: 'read' });
    expect(stalled.outcome).toBe('stalled');
    await ok('POST', `/domains/${cam}/map`, { iova: '0x21000000', paddr: frame, size: 0x1000, prot: ['read'] });
    ws.send(JSON.stringify({ type: 'resume', stall: stalled.stall, action: 'retry' }));
    await until(() => msgs.some((m) => (m as { type: string }).type === 'resume'));

    // MMIO with a translation effect: an msm TLB invalidation, the GART entry registers.
    await ok('PUT', '/smmus/cam_smmu/mmio/0x800', { value: '0x0' });

    // Another domain takes the camera over (attach with replace), then everything is torn down.
    const cam2 = (await ok('POST', '/domains', { for: 'camera' })).id as string;
    await ok('POST', `/domains/${cam2}/attach`, { device: 'camera', replace: true });
    await ok('POST', `/domains/${cam2}/detach`, { device: 'camera' });
    await ok('DELETE', `/domains/${cam2}`);

    // omap: a fault with IRQSTATUS and FAULT_AD, and a TLB flush through its window (GFLUSH).
    const dsp = (await ok('POST', '/domains', { for: 'dsp' })).id as string;
    await ok('POST', `/domains/${dsp}/attach`, { device: 'dsp' });
    expect((await ok('POST', '/devices/dsp/access', { iova: '0x12000000', access: 'read' })).fault.family).toBe('omap');
    await ok('PUT', '/smmus/mmu_dsp/mmio/0x60', { value: '0x1' });

    // gart: the DMA API in its aperture (config, map, map-sg, sync, unmap), a fault, an entry written by MMIO.
    await ok('PATCH', '/devices/gr2d/dma', { flushPolicy: 'strict' });
    const m = (await ok('POST', '/devices/gr2d/dma/map', { paddr: frame, size: 0x1000, dir: 'to-device' })).dmaAddr as string;
    const sg = (await ok('POST', '/devices/gr2d/dma/map-sg', { segments: [{ paddr: h(Number(frame) + 0x2000), size: 0x1000 }], dir: 'from-device' })).dmaAddr as string;
    await ok('POST', '/devices/gr2d/dma/sync', { dmaAddr: sg, size: 0x100, for: 'cpu' });
    // DMA-debug refusals, one per check.
    await refused('POST', '/devices/gr2d/dma/unmap', { dmaAddr: '0x59f00000', size: 0x1000, dir: 'to-device' }, 'unknown-handle');
    await refused('POST', '/devices/gr2d/dma/unmap', { dmaAddr: m, size: 0x2000, dir: 'to-device' }, 'size-mismatch');
    await refused('POST', '/devices/gr2d/dma/unmap', { dmaAddr: m, size: 0x1000, dir: 'from-device' }, 'direction-mismatch');
    await refused('POST', '/devices/gr2d/dma/sync', { dmaAddr: m, size: 0x2000, for: 'device' }, 'sync-outside-mapping');
    await refused('POST', '/devices/gr2d/dma/map', { paddr: h(Number(frame) + 0x2000), size: 0x1000, dir: 'to-device' }, 'overlapping-mapping');
    await ok('POST', '/devices/gr2d/dma/unmap', { dmaAddr: m, size: 0x1000, dir: 'to-device' });
    expect((await ok('POST', '/devices/gr2d/access', { iova: '0x58000000', access: 'write' })).fault.family).toBe('gart');
    await ok('POST', '/smmus/gart/mmio', { ops: [{ op: 'write', offset: '0x28', value: '0x59fff000' }, { op: 'write', offset: '0x2c', value: '0x0' }] });
    // The mapping still live when its device leaves its DMA domain: a leak.
    const gartDomain = (await ok('GET', '/devices/gr2d/dma')).domain as string;
    await ok('POST', `/domains/${gartDomain}/detach`, { device: 'gr2d' });

    // Direct-mode DMA above the JPEG encoder's mask: bounced through the pool.
    await ok('PATCH', '/devices/jpeg/dma', { mode: 'direct', dmaLimit: h(JPEG_LIMIT) });
    const bounced = (await ok('POST', '/devices/jpeg/dma/map', { paddr: h(Number(frame) + 0x4000), size: 0x800, dir: 'to-device' })).dmaAddr as string;
    expect(bounced).toBe(h(BOUNCE));

    // The session goes: its subscribers get the delete event, then the socket closes.
    const owner = await c.call('DELETE', '/', undefined, c.token);
    expect(owner.status).toBe(204);
    expect(await closed).toBe(4404);

    const events = msgs.map((m) => {
      const gap = GapMessage.safeParse(m);
      const err = SocketErrorMessage.safeParse(m);
      expect(gap.success || err.success, `not an event: ${JSON.stringify(m)}`).toBe(false);
      const ev = Event.safeParse(m);
      expect(ev.error?.issues, JSON.stringify(m)).toBeUndefined();
      return ev.data!;
    });
    // Nothing missed: seq runs from 1 without a hole.
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    const all = variants(Event);
    const seen = new Set(events.flatMap((e) => all.filter((v) => v === e.type || variantOf(v, e))));
    expect(all.filter((v) => !seen.has(v))).toEqual([]);
    expect(new Set(events.map((e) => e.type))).toEqual(new Set(EVENT_TYPES));
    // Spot checks of exact values: the stall's resume, the bounce copy, the leak.
    expect(events.find((e) => e.type === 'resume')).toMatchObject({ action: 'retry', outcome: 'ok', device: 'camera', by: { role: 'operator', label: 'rig' } });
    expect(events.find((e) => e.type === 'bounce')).toMatchObject({ device: 'jpeg', dir: 'to-device', from: h(Number(frame) + 0x4000), to: h(BOUNCE), bytes: 0x800, dmaAddr: h(BOUNCE) });
    expect(events.find((e) => e.type === 'dma-debug' && e.check === 'leak')).toMatchObject({ device: 'gr2d', domain: gartDomain, reason: 'detach', dmaAddr: sg, size: 0x1000, dir: 'from-device' });
    expect(events.at(-1)).toMatchObject({ type: 'session', action: 'delete', session: c.sid });
  });

  it('the OpenAPI document describes the socket\'s messages (its 101) with the same declaration', async () => {
    const app = await build();
    await app.ready();
    const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json();
    await app.close();
    const text = JSON.stringify(doc.paths['/v1/sessions/{sid}/events'].get.responses['101'].content['application/json'].schema);
    const types = [...text.matchAll(/"type":\{"type":"string","enum":\["([a-z-]+)"\]\}/g)].map((m) => m[1]);
    expect(new Set(types)).toEqual(new Set([...EVENT_TYPES, 'gap', 'error']));
  });

  it('the strict schema refuses an unknown field, a missing field and a wrong type', () => {
    const map = { seq: 1, time: '2026-01-01T00:00:00.000Z', type: 'map', domain: 'dom-1', iova: '0x0', paddr: '0x80000000', size: 4096, prot: ['read'], pages: { '4K': 1, '64K': 0, '1M': 0, '16M': 0 } };
    expect(Event.safeParse(map).success).toBe(true);
    expect(Event.safeParse({ ...map, extra: 1 }).success).toBe(false);
    const { paddr: _p, ...noPaddr } = map;
    expect(Event.safeParse(noPaddr).success).toBe(false);
    expect(Event.safeParse({ ...map, size: '4096' }).success).toBe(false);
    expect(Event.safeParse({ ...map, type: 'mapped' }).success).toBe(false);
  });
});

/** Whether event `e` is variant `v` ("type/discriminator=value"). */
function variantOf(v: string, e: object): boolean {
  const m = /^([^/]+)\/([^=]+)=(.*)$/.exec(v);
  const f = e as Record<string, unknown>;
  return m !== null && f.type === m[1] && String(f[m[2]!]) === m[3];
}
