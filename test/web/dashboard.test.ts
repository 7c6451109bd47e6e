import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/server/app.js';
import { MIXED_SOC } from '../../examples/mixed-soc.js';
import { systemTool } from '../support/tools.js';

const chromiumPath = systemTool('chromium');

/** Screenshots go to docs/ (for the README) with UPDATE_SCREENSHOTS=1, else to a temporary directory. */
const shots = process.env.UPDATE_SCREENSHOTS ? 'docs' : mkdtempSync(join(tmpdir(), 'iommud-shots-'));

/** Forgets the last hover's text, so that a wait for the next one cannot be satisfied by an old one. */
function clearMapInfo(): void {
  const info = document.querySelector('#map-info') as HTMLElement;
  info.textContent = '';
  delete info.dataset.iova;
}

/**
 * What breaks a layout, measured in the page in one task: a box wider than its parent, two sibling boxes that
 * overlap, a page wider than the window. Returns one line per problem (empty when the layout holds).
 */
function layoutProblems(): string[] {
  const out: string[] = [];
  const name = (e: Element) => `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}${e.classList.length ? '.' + [...e.classList].join('.') : ''}`;
  const boxes = [
    '.columns > *', '#middle > *', '.card:not(#overview) > *', '.ctx > *', '.smmu > *', '.ctx-detail > *', '.actions-row > *', '.field > *', '.prot-group > *',
    '#tlb-legend > *', '.charts > *', '.chart > *', '.map-wrap > *', '.map-main > *', '.extents-box > *', '.overview-row > *', '#regions > *', '.filters > *',
    '#dma-devices > *', '.dma-device > *', '#family-view > *', '.omap-tlb > *', '.gart-entries > *', '.pager > *', '#cache-view > *',
  ].join(', ');
  const seen = [...document.querySelectorAll(boxes)].filter((e) => {
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  });
  const siblings = new Map<Element, Element[]>();
  for (const e of seen) {
    const p = e.parentElement!;
    const r = e.getBoundingClientRect();
    const pr = p.getBoundingClientRect();
    if (r.left < pr.left - 1 || r.right > pr.right + 1) out.push(`${name(e)} sticks out of ${name(p)} (${Math.round(r.left)}–${Math.round(r.right)} in ${Math.round(pr.left)}–${Math.round(pr.right)})`);
    siblings.set(p, [...(siblings.get(p) ?? []), e]);
  }
  for (const kids of siblings.values()) {
    for (let i = 0; i < kids.length; i++) {
      for (let j = i + 1; j < kids.length; j++) {
        const a = kids[i]!.getBoundingClientRect();
        const b = kids[j]!.getBoundingClientRect();
        const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (w > 1 && h > 1) out.push(`${name(kids[i]!)} overlaps ${name(kids[j]!)} by ${Math.round(w)}×${Math.round(h)} px`);
      }
    }
  }
  // A row squeezed by its neighbour: a context's name broken over more than three lines.
  for (const e of document.querySelectorAll('.ctx > span:first-child')) {
    if (e.getBoundingClientRect().height > 3 * parseFloat(getComputedStyle(e).lineHeight || '18')) out.push(`${name(e.parentElement!)} "${e.textContent}" squeezed to ${Math.round(e.getBoundingClientRect().width)} px`);
  }
  if (document.documentElement.scrollWidth > window.innerWidth) out.push(`page is ${document.documentElement.scrollWidth} px wide in a ${window.innerWidth} px window`);
  return out;
}

/** End to end in Debian's Chromium (installed by .ci/run when missing), driven by playwright-core. */
describe.skipIf(!chromiumPath)('dashboard in headless Chromium', () => {
  let app: FastifyInstance;
  let url: string;
  let browser: Browser;
  let page: Page;
  let sid: string;
  let token: string;
  /** Fills and submits the page's map form, as a user would. */
  const mapFromPage = async (iova: string, paddr: string, size: string) => {
    await page.fill('#map-form input[name=iova]', iova);
    await page.fill('#map-form input[name=paddr]', paddr);
    await page.fill('#map-form input[name=size]', size);
    await page.click('#map-form button');
  };
  const call = async (method: string, path: string, body?: unknown) => {
    const r = await app.inject({ method: method as 'POST', url: `/v1/sessions/${sid}${path}`, headers: { authorization: `Bearer ${token}` }, ...(body !== undefined ? { payload: body as object } : {}) });
    return r.statusCode === 204 ? null : r.json();
  };
  /** A session of its own, with a caller bound to its token. */
  const newSession = async (payload: object) => {
    const s = (await app.inject({ method: 'POST', url: '/v1/sessions', payload })).json() as { id: string; token: string };
    const sc = async (method: string, path: string, body?: unknown) => {
      const r = await app.inject({ method: method as 'POST', url: `/v1/sessions/${s.id}${path}`, headers: { authorization: `Bearer ${s.token}` }, ...(body !== undefined ? { payload: body as object } : {}) });
      return r.statusCode === 204 ? null : r.json();
    };
    return { ...s, call: sc };
  };
  /** A new tab logged into a session, once its event socket is live (the history has been asked for). */
  const openPage = async (s: { id: string; token: string }, width = 1280, height = 900) => {
    const p = await browser.newPage({ viewport: { width, height } });
    p.setDefaultTimeout(15_000);
    p.on('pageerror', (e) => console.log('PAGEERR', e.message));
    await p.goto(url + '/');
    await p.fill('#sid', s.id);
    await p.fill('#token', s.token);
    await p.click('#login-form button');
    await p.waitForFunction(() => document.querySelector('#conn')?.textContent === 'events: live');
    return p;
  };

  beforeAll(async () => {
    app = await build();
    url = await app.listen({ port: 0, host: '127.0.0.1' });
    ({ id: sid, token } = (await app.inject({ method: 'POST', url: '/v1/sessions', payload: { name: 'dashboard' } })).json());
    const d = (await call('POST', '/domains', { label: 'camera' })).id;
    await call('POST', `/domains/${d}/attach`, { device: 'vfe_imgwr' });
    await call('POST', `/domains/${d}/map`, { iova: '0x10000000', paddr: '0x40000000', size: '0x100000', prot: ['read'] });
    // A fault before anyone logs in: the page must show it from the retained history.
    await call('POST', '/devices/vfe_imgwr/access', { iova: '0x30000000', access: 'read' });
    await call('POST', '/smmus/vfe/contexts/vfe_imgwr/clear-fault', {});
    const executablePath = chromiumPath!;
    browser = await chromium.launch({
      executablePath,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    page.setDefaultTimeout(15_000);
    page.on('pageerror', (e) => console.log('PAGEERR', e.message));
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await app?.close();
  });

  it('token prompt, then the msm8x60 topology', async () => {
    await page.goto(url + '/');
    await page.fill('#sid', sid);
    await page.fill('#token', token);
    await page.click('#login-form button');
    await page.waitForSelector('.ctx[data-device="vfe_imgwr"]');
    const devices = await page.$$eval('.ctx[data-device]', (els) => els.map((e) => (e as HTMLElement).dataset.device).filter(Boolean));
    expect(devices).toHaveLength(21);
    expect(await page.textContent('#topology')).toContain('vfe_imgwr');
    expect(await page.textContent('.ctx[data-device="vfe_imgwr"]')).toContain('dom-1');
    // The fault raised before login comes from the history (subscribed with since=0).
    await page.waitForSelector('.fault-item');
    expect(await page.$$eval('.fault-item', (els) => els.map((e) => e.textContent))).toEqual([expect.stringContaining('translation vfe_imgwr read @0x30000000')]);
    await page.screenshot({ path: join(shots, 'dashboard-topology.png') });
  }, 60_000);

  it('maps a region from the page and it appears on the address-space map', async () => {
    await mapFromPage('0x40000000', '0x41000000', '0x1000000');
    await page.waitForFunction(() => document.querySelector('#action-result')?.textContent?.includes('mapped 0x40000000'));
    // 0x40000000 is a quarter of the 4 GiB space: row 128 of 512, column 0. A writable supersection is purple.
    await page.waitForFunction(() => {
      const c = document.querySelector('#map') as HTMLCanvasElement;
      const [r, g, b] = c.getContext('2d')!.getImageData(0, 128, 1, 1).data;
      return r === 168 && g === 85 && b === 247;
    });
    expect((await call('GET', '/domains/dom-1')).pages['16M']).toBe(1);
    // The read-only 1M section at 0x10000000 is drawn lighter orange.
    const px = await page.evaluate(() => [...(document.querySelector('#map') as HTMLCanvasElement).getContext('2d')!.getImageData(0, 32, 1, 1).data]);
    expect(px).toEqual([250, 206, 133, 255]);
    // The extents table beside the map lists both mappings; a row jumps the map to that extent.
    await page.waitForFunction(() => document.querySelectorAll('#extents tr.extent').length === 2);
    expect(await page.$$eval('#extents tr.extent', (els) => els.map((e) => (e as HTMLElement).dataset.iova))).toEqual(['0x10000000', '0x40000000']);
    await page.click('#extents tr.extent[data-iova="0x10000000"]');
    expect(await page.textContent('#map-range')).toContain('showing 0x10000000 – 0x10200000');
    await page.dblclick('#map');
    await page.screenshot({ path: join(shots, 'dashboard-map.png') });
  }, 60_000);

  it('the overview strip shows a 1 MiB mapping in the 4 GiB space: hover names it, a click zooms onto it', async () => {
    await page.dblclick('#map');
    await page.waitForFunction(() => document.querySelector('#map-range')?.textContent?.startsWith('showing 0x0 – 0x100000000'));
    // One button per populated region, in iova order.
    expect(await page.$$eval('#regions button.region', (els) => els.map((e) => e.textContent))).toEqual(['0x10000000 · 1 MiB', '0x40000000 · 16 MiB']);
    // 0x10000000 is 1/16 of the space: strip pixel 64 of 1024, drawn 3 px wide although 1 MiB is a quarter pixel.
    const strip = (await page.locator('#map-overview').boundingBox())!;
    const at = (px: number) => ({ x: strip.x + ((px + 0.5) / 1024) * strip.width, y: strip.y + strip.height / 2 });
    const p = at(65);
    await page.mouse.move(p.x, p.y);
    await page.waitForFunction(() => document.querySelector('#map-info')?.textContent?.startsWith('extent 0x10000000'));
    expect(await page.textContent('#map-info')).toBe('extent 0x10000000 +1 MiB → paddr 0x40000000 · read · 1M pages · click to zoom');
    // Its colour on the strip: the 1M orange.
    expect(await page.evaluate(() => [...(document.querySelector('#map-overview') as HTMLCanvasElement).getContext('2d')!.getImageData(65, 10, 1, 1).data])).toEqual([245, 158, 11, 255]);
    await page.mouse.click(p.x, p.y);
    await page.waitForFunction(() => document.querySelector('#map-range')?.textContent?.startsWith('showing 0x10000000 – 0x10200000'));
    // The big map now holds the extent in its first half (4 bytes a pixel): hovering there translates exactly.
    const box = (await page.locator('#map').boundingBox())!;
    await page.evaluate(clearMapInfo);
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.2);
    await page.waitForFunction(() => document.querySelector('#map-info')?.textContent?.startsWith('iova '));
    const info = (await page.textContent('#map-info'))!;
    const m = /^iova (0x[0-9a-f]+) → paddr (0x[0-9a-f]+) · read · 1M pages · extent 0x10000000 \+1 MiB$/.exec(info);
    expect(m, info).not.toBeNull();
    const iova = Number(m![1]);
    expect(iova).toBeGreaterThanOrEqual(0x10000000);
    expect(iova).toBeLessThan(0x10100000);
    expect(Number(m![2]) - iova).toBe(0x30000000);
  }, 60_000);

  it('the wheel zooms around the cursor: the address under it stays under it', async () => {
    await page.dblclick('#map');
    await page.waitForFunction(() => document.querySelector('#map-range')?.textContent?.includes('(8 KiB per pixel'));
    const box = (await page.locator('#map').boundingBox())!;
    // A point inside the 16 MiB mapping at 0x40000000 (row 128 of 512 at full view) and one off-centre elsewhere.
    for (const [fx, fy] of [[0.1, 0.254], [0.73, 0.61]] as const) {
      await page.dblclick('#map');
      const x = Math.round(box.x + box.width * fx);
      const y = Math.round(box.y + box.height * fy);
      await page.evaluate(clearMapInfo);
      await page.mouse.move(x, y);
      await page.waitForFunction(() => document.querySelector('#map-info')?.hasAttribute('data-iova'));
      const before = await page.getAttribute('#map-info', 'data-iova');
      for (const per of ['4 KiB', '2 KiB', '1 KiB']) {
        await page.mouse.wheel(0, -100);
        await page.waitForFunction((t) => document.querySelector('#map-range')?.textContent?.includes(`(${t} per pixel`), per);
        // Read in one page task: the range and the address at the cursor after this notch.
        const { iova, range } = await page.evaluate(() => ({ iova: document.querySelector('#map-info')!.getAttribute('data-iova'), range: document.querySelector('#map-range')!.textContent }));
        expect(iova, range!).toBe(before);
      }
    }
    await page.mouse.wheel(0, 100);
    await page.waitForFunction(() => document.querySelector('#map-range')?.textContent?.includes('(2 KiB per pixel'));
    await page.dblclick('#map');
  }, 60_000);

  it('a fault raised through the API shows in the feed, with its registers', async () => {
    await page.waitForFunction(() => document.querySelector('#conn')?.textContent === 'events: live');
    await call('POST', '/devices/vfe_imgwr/access', { iova: '0x20000000', access: 'write' });
    // Waits for the condition, not for a duration (latency is the benchmark's business, not this test's).
    await page.waitForFunction(() => document.querySelector('.fault-item')?.textContent?.includes('@0x20000000'));
    expect(await page.textContent('.fault-item')).toMatch(/^translation vfe_imgwr write @0x20000000 FSR 0x2 FAR 0x20000000 FSYNR0 0x2 #\d+$/);
    await page.screenshot({ path: join(shots, 'dashboard.png'), fullPage: true });
  }, 60_000);

  it('clicking a context shows its registers decoded right beside it, and a stall gets resume buttons', async () => {
    await call('POST', '/smmus/vfe/contexts/vfe_imgwr/clear-fault', {});
    await call('PATCH', '/smmus/vfe/contexts/vfe_imgwr', { faultMode: 'stall' });
    // Attach again so that attach programs ACTLR.CFCFG (stall) from the fault mode.
    await call('POST', '/domains/dom-1/attach', { device: 'vfe_imgwr', replace: true });
    const stall = await call('POST', '/devices/vfe_imgwr/access', { iova: '0x50000000', access: 'write' });
    expect(stall.stall).toMatch(/^stall-/);
    await page.click('.ctx[data-device="vfe_imgwr"]');
    await page.waitForSelector('#context-detail .stall');
    // Both rectangles measured in one page task: the topology is redrawn on every event and poll, so two separate
    // locator calls can straddle a redraw and find the detail detached (null box).
    const { row, detail } = await page.evaluate(() => {
      const box = (sel: string) => {
        const r = document.querySelector(sel)!.getBoundingClientRect();
        return { y: r.y, height: r.height };
      };
      return { row: box('.ctx[data-device="vfe_imgwr"]'), detail: box('#context-detail') };
    });
    // Directly under the clicked row and inside the viewport (1000 px high).
    expect(detail.y - (row.y + row.height)).toBeLessThan(20);
    expect(detail.y).toBeGreaterThanOrEqual(0);
    expect(detail.y + Math.min(detail.height, 200)).toBeLessThanOrEqual(1000);
    const decoded = async (reg: string) => page.textContent(`#context-detail tr[data-reg="${reg}"] td.decoded`);
    expect(await decoded('FSR')).toBe('TF|SS');
    expect(await decoded('SCTLR')).toBe('M TRE AFE');
    expect(await decoded('ACTLR')).toBe('CFEIE TLBMCFG=3 CFCFG V2PCFG=3');
    expect(await decoded('TTBR0')).toBe('base 0x5f000000');
    expect(await page.textContent('.smmu[data-smmu="vfe"] .badge')).toBe('msm');
    await page.click(`#context-detail .stall[data-stall="${stall.stall}"] .resume-terminate`);
    await page.waitForFunction(() => !document.querySelector('#context-detail .stall'));
    expect((await call('GET', '/smmus/vfe/contexts/vfe_imgwr')).stalls).toEqual([]);
  }, 60_000);

  it('a session without faults says so, and says what to do first', async () => {
    const fresh = (await app.inject({ method: 'POST', url: '/v1/sessions', payload: { name: 'empty' } })).json();
    const p2 = await browser.newPage({ viewport: { width: 1024, height: 800 } });
    try {
      await p2.goto(url + '/');
      await p2.fill('#sid', fresh.id);
      await p2.fill('#token', fresh.token);
      await p2.click('#login-form button');
      await p2.waitForFunction(() => document.querySelector('#conn')?.textContent === 'events: live');
      expect(await p2.textContent('#faults')).toBe('no faults yet');
      expect(await p2.isVisible('#empty-hint')).toBe(true);
      expect(await p2.textContent('#empty-hint')).toContain('alloc domain');
      await p2.fill('#map-form input[name=iova]', '0x1000');
      await p2.click('#map-form button');
      await p2.waitForSelector('#action-result .error');
      expect(await p2.textContent('#action-result .error')).toMatch(/^no domain yet: alloc a domain first/);
    } finally {
      await p2.close();
    }
  }, 60_000);

  it('every control of the action forms has a label right beside it', async () => {
    const problems = await page.evaluate(() => {
      const out: string[] = [];
      const controls = [...document.querySelectorAll('#actions input, #actions select')] as Array<HTMLInputElement | HTMLSelectElement>;
      if (controls.length < 12) out.push(`only ${controls.length} controls`);
      for (const c of controls) {
        const label = c.labels?.[0];
        const text = label && ([...label.querySelectorAll('span')].find((s) => !s.contains(c)) as HTMLElement | undefined);
        if (!text || !text.textContent?.trim()) {
          out.push(`${c.name}: no label text`);
          continue;
        }
        const a = text.getBoundingClientRect();
        const b = c.getBoundingClientRect();
        const sameLine = a.top < b.bottom && b.top < a.bottom;
        const gap = a.right <= b.left ? b.left - a.right : b.right <= a.left ? a.left - b.right : -1;
        if (!sameLine || gap < 0 || gap > 12) out.push(`${c.name}: label "${text.textContent}" not beside its control (gap ${gap}, same line ${sameLine})`);
      }
      return out;
    });
    expect(problems).toEqual([]);
    expect(await page.$$eval('#map-form .field-name', (els) => els.map((e) => e.textContent))).toEqual(['iova', 'paddr', 'size']);
  }, 60_000);

  it('DMA mappings are listed per device, with direction, owner and physical range', async () => {
    const buf = await call('POST', '/buffers', { size: 0x3000 });
    const m = await call('POST', '/devices/jpegd_src/dma/map', { paddr: buf.paddr, size: 0x3000, dir: 'to-device' });
    await page.waitForSelector(`.dma-device[data-device="jpegd_src"] tr.dma-mapping[data-dma="${m.dmaAddr}"]`);
    const cells = await page.$$eval(`.dma-device[data-device="jpegd_src"] tr.dma-mapping[data-dma="${m.dmaAddr}"] td`, (els) => els.map((e) => e.textContent));
    // No owner without a CPU cache model (ownership is tracked for the coherency checks only).
    expect(cells).toEqual([m.dmaAddr, '12 KiB', 'to-device', '-', `${buf.paddr} +12 KiB`, '-']);
    const dom = (await call('GET', '/devices/jpegd_src/dma')).domain;
    expect(await page.textContent('.dma-device[data-device="jpegd_src"] h3')).toBe(`jpegd_src iommu · ${dom} · strict · mask 0xffffffff · 1 live`);
    // A second mapping on another device, then the first device's unmap: it moves to the idle line.
    const m2 = await call('POST', '/devices/mdp_vg1/dma/map', { paddr: buf.paddr, size: 0x1000, dir: 'to-device' });
    await call('POST', '/devices/jpegd_src/dma/unmap', { dmaAddr: m.dmaAddr, size: 0x3000, dir: 'to-device' });
    // Each event schedules a refresh; one that started before the second map's event can render the unmap without
    // mdp_vg1 first, so the wait is for the state after both.
    await page.waitForFunction(() => document.querySelector('.dma-idle')?.textContent === 'no live mappings: jpegd_src' && document.querySelector('.dma-device[data-device="mdp_vg1"]') !== null);
    expect(await page.$$eval('.dma-device', (els) => els.map((e) => (e as HTMLElement).dataset.device))).toEqual(['mdp_vg1']);
    expect(await page.$$eval('.dma-device[data-device="mdp_vg1"] tr.dma-mapping', (els) => els.map((e) => (e as HTMLElement).dataset.dma))).toEqual([m2.dmaAddr]);
  }, 60_000);

  it('the TLB charts plot hit rate and misses per SMMU over time, in the legend colours', async () => {
    // rot's TLB is quiet until now: four pages, each read twice (four misses, then four hits).
    const d = (await call('POST', '/domains', { label: 'rotator' })).id;
    await call('POST', `/domains/${d}/attach`, { device: 'rot_src' });
    await call('POST', `/domains/${d}/map`, { iova: '0x100000', paddr: '0x40800000', size: '0x4000', prot: ['read'] });
    const before = await page.evaluate(() => {
      const s = (window as any).iommudDashboard.state.tlb.get('rot');
      return s.misses.reduce((n: number, v: number | null) => n + (v ?? 0), 0);
    });
    expect(before).toBe(0);
    for (const iova of ['0x100000', '0x101000', '0x102000', '0x103000', '0x100000', '0x101000', '0x102000', '0x103000']) await call('POST', '/devices/rot_src/access', { iova, access: 'read' });
    const rot = (await call('GET', '/smmus')).find((x: { name: string }) => x.name === 'rot').tlb;
    expect([rot.hits, rot.misses]).toEqual([4, 4]);
    // The samples' misses add up to the four misses, whichever second they fell into.
    await page.waitForFunction(() => {
      const s = (window as any).iommudDashboard.state.tlb.get('rot');
      return s.misses.reduce((n: number, v: number | null) => n + (v ?? 0), 0) === 4 && s.hits === 4;
    });
    const charts = await page.evaluate(() => {
      const { state, charts } = (window as any).iommudDashboard;
      const names = [...state.tlb.keys()];
      const i = names.indexOf('rot') + 1;
      const sum = (a: Array<number | null>) => a.reduce((n: number, v) => n + (v ?? 0), 0);
      return {
        labels: [charts.rate.series.map((x: any) => x.label), charts.misses.series.map((x: any) => x.label)],
        misses: sum(charts.misses.data[i]),
        colours: [charts.rate.series[i].stroke(charts.rate, i), charts.misses.series[i].stroke(charts.misses, i)],
        swatch: getComputedStyle(document.querySelector('#tlb-legend .tlb-item[data-smmu="rot"] .sw')!).backgroundColor,
        legend: document.querySelector('#tlb-legend .tlb-item[data-smmu="rot"]')!.textContent,
      };
    });
    expect(charts.labels[0]).toEqual(charts.labels[1]);
    expect(charts.labels[0]).toContain('rot');
    expect(charts.misses).toBe(4);
    // Both charts draw rot in its legend swatch's colour.
    const rgb = (h: string) => `rgb(${parseInt(h.slice(1, 3), 16)}, ${parseInt(h.slice(3, 5), 16)}, ${parseInt(h.slice(5, 7), 16)})`;
    expect(charts.colours.map(rgb)).toEqual([charts.swatch, charts.swatch]);
    expect(charts.legend).toBe('rot: 4 hits · 4 misses · 50%');
  }, 60_000);

  it('holds its layout at 1024 and 1920 px with domains, mappings, a fault and a stall (screenshots for docs/)', async () => {
    const stall = await call('POST', '/devices/vfe_imgwr/access', { iova: '0x60000000', access: 'read' });
    expect(stall.outcome).toBe('stalled');
    await page.waitForSelector(`#context-detail .stall[data-stall="${stall.stall}"]`);
    // The TLB legend shows each SMMU's totals with a colour of its own.
    const smmus = await call('GET', '/smmus');
    const vfe = smmus.find((x: { name: string }) => x.name === 'vfe');
    await page.waitForFunction((t) => document.querySelector('#tlb-legend .tlb-item[data-smmu="vfe"]')?.textContent?.startsWith(t), `vfe: ${vfe.tlb.hits} hits · ${vfe.tlb.misses} misses`);
    const swatches = await page.$$eval('#tlb-legend .sw', (els) => els.map((e) => getComputedStyle(e).backgroundColor));
    expect(swatches).toHaveLength(smmus.length);
    expect(new Set(swatches).size).toBe(smmus.length);
    for (const width of [1024, 1920]) {
      await page.setViewportSize({ width, height: 1100 });
      await page.waitForFunction(() => document.querySelectorAll('.fault-item').length >= 2);
      // No sideways overflow, no box sticking out of its parent, no two sibling boxes on top of each other. Polled,
      // since the charts follow their box's new width a frame later; each poll measures everything in one task.
      await expect.poll(() => page.evaluate(layoutProblems), { timeout: 10_000 }).toEqual([]);
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(width);
      // Zoom onto the 16 MiB mapping (its region button) and hover it, so the screenshot shows a translation.
      await page.click('#regions button.region[data-start="0x40000000"]');
      await page.waitForFunction(() => document.querySelector('#map-range')?.textContent?.startsWith('showing 0x40000000 – 0x42000000'));
      const box = (await page.locator('#map').boundingBox())!;
      await page.evaluate(clearMapInfo);
      await page.locator('#map').hover({ position: { x: box.width * 0.3, y: box.height * 0.25 } });
      await expect.poll(() => page.textContent('#map-info')).toMatch(/^iova 0x40[0-9a-f]{6} → paddr 0x41[0-9a-f]{6} · read,write · 16M pages · extent 0x40000000 \+16 MiB$/);
      await page.screenshot({ path: join(shots, `dashboard-${width}.png`), fullPage: true });
    }
    await page.setViewportSize({ width: 1600, height: 1000 });
  }, 60_000);

  it('bounce copies show in the DMA event feed', async () => {
    const b = (await app.inject({ method: 'POST', url: '/v1/sessions', payload: { name: 'bounce', profile: 'tiny', cpuCache: {}, bounce: { paddr: '0x80100000', size: 0x8000 } } })).json();
    const bcall = async (method: string, path: string, body: unknown) =>
      (await app.inject({ method: method as 'POST', url: `/v1/sessions/${b.id}${path}`, headers: { authorization: `Bearer ${b.token}` }, payload: body as object })).json();
    await bcall('PATCH', '/devices/dev0/dma', { mode: 'direct', dmaLimit: '0x80ffffff' });
    expect(await bcall('POST', '/devices/dev0/dma/map', { paddr: '0x82000000', size: 0x1800, dir: 'bidirectional' })).toEqual({ dmaAddr: '0x80100000', size: 0x1800 });
    const p3 = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    try {
      await p3.goto(url + '/');
      await p3.fill('#sid', b.id);
      await p3.fill('#token', b.token);
      await p3.click('#login-form button');
      await p3.waitForSelector('#dma-events .dma-event.bounce');
      expect(await p3.textContent('#dma-events .dma-event.bounce')).toContain('bounce dev0 bidirectional 6 KiB 0x82000000 → 0x80100000');
    } finally {
      await p3.close();
    }
  }, 60_000);

  it('a driver that misses dma_sync_single_for_cpu: the DMA feed shows the coherency events, the cache view the lines', async () => {
    const b = await newSession({ name: 'rx-ring', profile: 'tiny', cpuCache: { lineSize: 32, lines: 1024 } });
    const ring = await b.call('POST', '/buffers', { size: 0x1000 });
    const other = await b.call('POST', '/buffers', { size: 0x1000 });
    expect([ring.paddr, other.paddr]).toEqual(['0x80000000', '0x80001000']);
    const { dmaAddr } = await b.call('POST', '/devices/dev0/dma/map', { paddr: ring.paddr, size: 0x800, dir: 'from-device' });
    const cpuRead = (paddr: string, size: number) => app.inject({ method: 'GET', url: `/v1/sessions/${b.id}/memory?paddr=${paddr}&size=${size}`, headers: { authorization: `Bearer ${b.token}` } });
    // The buggy driver polls the ring's header without dma_sync_single_for_cpu: the line is now cached...
    expect((await cpuRead('0x80000000', 8)).statusCode).toBe(200);
    // ...the device writes a packet into RAM beneath it, and the next poll reads the stale line.
    await b.call('POST', '/devices/dev0/access', { iova: dmaAddr, access: 'write', data: Buffer.alloc(64, 0x5a).toString('base64') });
    expect([...(await cpuRead('0x80000000', 8)).rawPayload]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    // CPU data in the other buffer: one dirty line (a store) and two clean ones (a load).
    await app.inject({ method: 'PUT', url: `/v1/sessions/${b.id}/memory?paddr=0x80001040`, headers: { authorization: `Bearer ${b.token}`, 'content-type': 'application/octet-stream' }, payload: Buffer.alloc(32, 1) });
    await cpuRead('0x80001100', 64);
    const counts = (await b.call('GET', '/')).coherency;
    expect(counts).toEqual({ 'stale-cpu-read': 1, 'device-read-stale': 0, 'lost-device-write': 0, 'cpu-access-device-owned': 1 });

    const p = await openPage(b);
    try {
      await p.waitForFunction(() => document.querySelectorAll('#dma-events .dma-event.coherency').length === 2);
      const items = await p.$$eval('#dma-events .dma-event.coherency', (els) => els.map((e) => [(e as HTMLElement).dataset.check, e.querySelector('.what')!.textContent]));
      // Newest first: the stale read of the line the device wrote, then the read of a buffer the device owned.
      expect(items).toEqual([
        ['stale-cpu-read', `stale-cpu-read dev0 @0x80000000 +32 B dma ${dmaAddr}`],
        ['cpu-access-device-owned', `cpu-access-device-owned dev0 @0x80000000 +8 B dma ${dmaAddr}`],
      ]);
      expect(await p.textContent('#dma-events .dma-event[data-check="stale-cpu-read"] .hint-line')).toContain('missing dma_sync_single_for_cpu');
      expect(await p.textContent('#overview')).toContain('coherency: stale-cpu-read 1, cpu-access-device-owned 1');
      // The ring's cached lines: the one line the driver polled, clean and stale.
      await p.waitForSelector('#cache-view .cache-summary');
      expect(await p.textContent('#cache-view .cache-summary')).toBe('128 lines of 32 B: 1 cached, 0 dirty · cache 4/1024 lines used');
      expect(await p.$$eval('#cache-view .cache-runs li', (els) => els.map((e) => e.textContent))).toEqual(['0x80000000 +32 B clean']);
      expect(await p.$$eval('#cache-view .line.clean', (els) => els.map((e) => (e as HTMLElement).dataset.paddr))).toEqual(['0x80000000']);
      // The other buffer: the store's dirty line and the load's two clean ones.
      await p.selectOption('#cache-buffer', '0x80001000');
      await p.waitForFunction(() => document.querySelector('#cache-view .cache-summary')?.textContent?.includes('3 cached'));
      expect(await p.textContent('#cache-view .cache-summary')).toBe('128 lines of 32 B: 3 cached, 1 dirty · cache 4/1024 lines used');
      expect(await p.$$eval('#cache-view .cache-runs li', (els) => els.map((e) => e.textContent))).toEqual(['0x80001040 +32 B dirty', '0x80001100 +64 B clean']);
      expect(await p.$$eval('#cache-view .line.dirty', (els) => els.map((e) => (e as HTMLElement).dataset.paddr))).toEqual(['0x80001040']);
      expect(await p.$$eval('#cache-view .line.clean', (els) => els.map((e) => (e as HTMLElement).dataset.paddr))).toEqual(['0x80001100', '0x80001120']);
      // The DMA view shows the ring's mapping, owned by the device (fetched once its `dma` event arrives).
      await p.waitForSelector('.dma-device[data-device="dev0"] tr.dma-mapping');
      expect(await p.$$eval(`.dma-device[data-device="dev0"] tr.dma-mapping td`, (els) => els.map((e) => e.textContent))).toEqual([dmaAddr, '2 KiB', 'from-device', 'device', '0x80000000 +2 KiB', '-']);
    } finally {
      await p.close();
    }
  }, 60_000);

  it('tegra20: the GART entry table, paged, with each valid entry and its physical page; faults in MC registers', async () => {
    const g = await newSession({ name: 'tegra', profile: 'tegra20' });
    const d = (await g.call('POST', '/domains', { for: 'gr2d', label: '2d' })).id;
    await g.call('POST', `/domains/${d}/attach`, { device: 'gr2d' });
    await g.call('POST', `/domains/${d}/map`, { iova: '0x58000000', paddr: '0x1000000', size: 100 * 4096, prot: ['read', 'write'] });
    const f = await g.call('POST', '/devices/gr2d/access', { iova: '0x58100000', access: 'write' });
    expect(f.outcome).toBe('fault');
    const p = await openPage(g);
    try {
      await p.waitForSelector('.gart-entries[data-smmu="gart"] .page-info');
      expect(await p.textContent('.gart-entries[data-smmu="gart"] h3')).toBe(`gart entries 100 of 8192 valid · aperture 0x58000000 +32 MiB · active domain ${d}`);
      expect(await p.textContent('.gart-entries .page-info')).toBe('valid entries 1–64 of 100');
      const rows = () => p.$$eval('.gart-entries tr.gart-entry', (els) => els.map((e) => [...e.children].map((c) => c.textContent)));
      const first = await rows();
      expect(first).toHaveLength(64);
      expect(first[0]).toEqual(['0', '0x58000000', '0x1000000', '0x81000000']);
      expect(first[63]).toEqual(['63', '0x5803f000', '0x103f000', '0x8103f000']);
      await p.click('.gart-entries .pager button.next');
      await p.waitForFunction(() => document.querySelector('.gart-entries .page-info')?.textContent === 'valid entries 65–100 of 100');
      const second = await rows();
      expect(second).toHaveLength(36);
      expect(second[0]).toEqual(['64', '0x58040000', '0x1040000', '0x81040000']);
      expect(second[35]).toEqual(['99', '0x58063000', '0x1063000', '0x81063000']);
      // The fault in the memory controller's registers, and the family badge.
      await p.waitForSelector('.fault-item');
      expect(await p.textContent('.fault-item')).toMatch(/^translation gr2d write @0x58100000 MC_INTSTATUS 0x80 ERROR_REQ 0x51 \(g2dw\) ERROR_ADDR 0x58100000 #\d+$/);
      expect(await p.textContent('.smmu[data-smmu="gart"] .badge')).toBe('gart');
      expect(await p.textContent('.ctx[data-device="gr2d"] > span:last-child')).toBe(`${d} · MC_INTSTATUS INVALID_GART_PAGE`);
    } finally {
      await p.close();
    }
  }, 60_000);

  it('omap4: the OMAP TLB with its locked entries marked, walker fills above LOCK.BASE; faults in IRQSTATUS', async () => {
    const o = await newSession({ name: 'omap', profile: 'omap4' });
    const d = (await o.call('POST', '/domains', { for: 'dsp', label: 'tesla' })).id;
    await o.call('POST', `/domains/${d}/attach`, { device: 'dsp' });
    await o.call('POST', `/domains/${d}/map`, { iova: '0x20000000', paddr: '0x80100000', size: 0x2000, prot: ['read'] });
    // Two entries loaded and locked by hand, as iopgtable_lock_tlb does: LOCK (base = victim = i), CAM, RAM, LD_TLB.
    const w = (offset: number, value: number) => ({ op: 'write', offset, value });
    await o.call('POST', '/smmus/mmu_dsp/mmio', {
      ops: [w(0x50, 0x000), w(0x58, 0x3000000e), w(0x5c, 0x80200000), w(0x54, 1), w(0x50, 0x410), w(0x58, 0x3000100e), w(0x5c, 0x80201000), w(0x54, 1), w(0x50, 0x820)],
    });
    expect((await o.call('POST', '/devices/dsp/access', { iova: '0x20000000', access: 'read' })).tlb).toBe('miss');
    await o.call('POST', '/devices/dsp/access', { iova: '0x12000000', access: 'read' });
    const p = await openPage(o);
    try {
      await p.waitForFunction(() => document.querySelectorAll('.omap-tlb[data-smmu="mmu_dsp"] tr.tlb-entry').length === 3);
      expect(await p.textContent('.omap-tlb[data-smmu="mmu_dsp"] h3')).toBe('mmu_dsp TLB 3/32 valid · LOCK.BASE 2 (entries below it are locked) · VICTIM 3');
      const rows = await p.$$eval('.omap-tlb[data-smmu="mmu_dsp"] tr.tlb-entry', (els) => els.map((e) => [e.classList.contains('locked'), ...[...e.children].map((c) => c.textContent)]));
      expect(rows).toEqual([
        [true, '0', '0x30000000', '0x80200000', '4 KiB', 'locked preserved LD_TLB', '0x3000000e', '0x80200000'],
        [true, '1', '0x30001000', '0x80201000', '4 KiB', 'locked preserved LD_TLB', '0x3000100e', '0x80201000'],
        [false, '2', '0x20000000', '0x80100000', '4 KiB', 'walker', '0x20000006', '0x80100000'],
      ]);
      expect(await p.textContent('.omap-tlb .badge.lock')).toBe('locked');
      // A walk while the page is open fills the entry at VICTIM, and the table follows.
      expect((await o.call('POST', '/devices/dsp/access', { iova: '0x20001000', access: 'read' })).tlb).toBe('miss');
      await p.waitForFunction(() => document.querySelectorAll('.omap-tlb[data-smmu="mmu_dsp"] tr.tlb-entry').length === 4);
      expect(await p.textContent('.omap-tlb[data-smmu="mmu_dsp"] h3')).toBe('mmu_dsp TLB 4/32 valid · LOCK.BASE 2 (entries below it are locked) · VICTIM 4');
      expect(await p.$$eval('.omap-tlb[data-smmu="mmu_dsp"] tr.tlb-entry[data-index="3"] td', (els) => els.map((e) => e.textContent))).toEqual(['3', '0x20001000', '0x80101000', '4 KiB', 'walker', '0x20001006', '0x80101000']);
      await p.waitForSelector('.fault-item');
      expect(await p.textContent('.fault-item')).toMatch(/^translation dsp read @0x12000000 IRQSTATUS 0x2 TRANSLATIONFAULT FAULT_AD 0x12000000 #\d+$/);
      expect(await p.textContent('.smmu[data-smmu="mmu_dsp"] .badge')).toBe('omap');
    } finally {
      await p.close();
    }
  }, 60_000);

  it('a mixed SoC (msm, omap, gart): every family with its badge, the OMAP TLB, the GART entries and the DMA mapping', async () => {
    const x = await newSession({ name: 'mixed', profile: MIXED_SOC });
    const buf = await x.call('POST', '/buffers', { size: 0x10000 });
    const cam = (await x.call('POST', '/domains', { for: 'camera', label: 'camera' })).id;
    await x.call('POST', `/domains/${cam}/attach`, { device: 'camera' });
    await x.call('POST', `/domains/${cam}/map`, { iova: '0x20000000', paddr: buf.paddr, size: 0x10000, prot: ['write'] });
    const dsp = (await x.call('POST', '/domains', { for: 'dsp', label: 'dsp' })).id;
    await x.call('POST', `/domains/${dsp}/attach`, { device: 'dsp' });
    await x.call('POST', `/domains/${dsp}/map`, { iova: '0x11000000', paddr: buf.paddr, size: 0x10000, prot: ['read'] });
    await x.call('POST', '/devices/dsp/access', { iova: '0x11000000', access: 'read' });
    const m = await x.call('POST', '/devices/gr2d/dma/map', { paddr: buf.paddr, size: 0x10000, dir: 'to-device' });
    for (const [dev, iova, access] of [['camera', '0x30000000', 'read'], ['dsp', '0x12000000', 'read'], ['gr2d', '0x58ff0000', 'write']]) await x.call('POST', `/devices/${dev}/access`, { iova, access });
    const p = await openPage(x);
    try {
      await p.waitForFunction(() => document.querySelectorAll('.fault-item').length === 3 && document.querySelectorAll('.gart-entries tr.gart-entry').length === 16);
      expect(await p.$$eval('.smmu', (els) => els.map((e) => [(e as HTMLElement).dataset.smmu, e.querySelector('.badge')!.textContent]))).toEqual([['cam_smmu', 'msm'], ['mmu_dsp', 'omap'], ['gart', 'gart']]);
      expect(await p.textContent('.gart-entries .page-info')).toBe('valid entries 1–16 of 16');
      expect(await p.$$eval('.gart-entries tr.gart-entry', (els) => els.slice(0, 2).map((e) => [...e.children].map((c) => c.textContent)))).toEqual([
        [String((Number(m.dmaAddr) - 0x58000000) / 4096), m.dmaAddr, buf.paddr, `0x${(0x80000000 + Number(buf.paddr)).toString(16)}`],
        [String((Number(m.dmaAddr) - 0x58000000) / 4096 + 1), `0x${(Number(m.dmaAddr) + 0x1000).toString(16)}`, `0x${(Number(buf.paddr) + 0x1000).toString(16)}`, `0x${(0x80001000 + Number(buf.paddr)).toString(16)}`],
      ]);
      expect(await p.$$eval('.omap-tlb tr.tlb-entry', (els) => els.map((e) => [...e.children].slice(0, 3).map((c) => c.textContent)))).toEqual([['0', '0x11000000', buf.paddr]]);
      await p.waitForSelector('.dma-device[data-device="gr2d"] tr.dma-mapping');
      expect(await p.$$eval(`.dma-device[data-device="gr2d"] tr.dma-mapping td`, (els) => els.slice(0, 3).map((e) => e.textContent))).toEqual([m.dmaAddr, '64 KiB', 'to-device']);
      // One fault per family, each in its own registers (newest first).
      const faults = await p.$$eval('.fault-item', (els) => els.map((e) => e.textContent!.replace(/ #\d+$/, '')));
      expect(faults[0]).toMatch(/^translation gr2d write @0x58ff0000 MC_INTSTATUS 0x80 ERROR_REQ 0x51 \(g2dw\) ERROR_ADDR 0x58ff0000$/);
      expect(faults[1]).toBe('translation dsp read @0x12000000 IRQSTATUS 0x2 TRANSLATIONFAULT FAULT_AD 0x12000000');
      expect(faults[2]).toMatch(/^translation camera read @0x30000000 FSR 0x2 FAR 0x30000000 FSYNR0 0x2$/);
      // The family panels hold the layout too, at both ends of the range.
      for (const width of [1024, 1920, 1280]) {
        await p.setViewportSize({ width, height: 900 });
        await expect.poll(() => p.evaluate(layoutProblems), { timeout: 10_000 }).toEqual([]);
      }
      await p.screenshot({ path: join(shots, 'dashboard-mixed.png'), fullPage: true });
    } finally {
      await p.close();
    }
  }, 60_000);

  it('an operator action refused by the API shows its error inline', async () => {
    await mapFromPage('0x40000000', '0x41000000', '0x1000');
    await page.waitForFunction(() => document.querySelector('#action-result .error')?.textContent?.startsWith('ALREADY_MAPPED'));
  }, 60_000);
});
