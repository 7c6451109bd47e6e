import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/server/app.js';
import { systemTool } from '../support/tools.js';

const chromiumPath = systemTool('chromium');

/** Screenshots go to docs/ (for the README) with UPDATE_SCREENSHOTS=1, else to a temporary directory. */
const shots = process.env.UPDATE_SCREENSHOTS ? 'docs' : mkdtempSync(join(tmpdir(), 'iommud-shots-'));

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
  const call = async (method: string, path: string, body?: unknown) =>
    (await app.inject({ method: method as 'POST', url: `/v1/sessions/${sid}${path}`, headers: { authorization: `Bearer ${token}` }, ...(body !== undefined ? { payload: body as object } : {}) })).json();

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
  }, 30_000);

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
  }, 30_000);

  it('a fault raised through the API shows in the feed within a second', async () => {
    await page.waitForFunction(() => document.querySelector('#conn')?.textContent === 'events: live');
    await call('POST', '/devices/vfe_imgwr/access', { iova: '0x20000000', access: 'write' });
    const t0 = Date.now();
    await page.waitForFunction(() => document.querySelector('.fault-item')?.textContent?.includes('@0x20000000'), null, { timeout: 1000 });
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(await page.textContent('.fault-item')).toContain('translation vfe_imgwr write @0x20000000');
    await page.screenshot({ path: join(shots, 'dashboard.png'), fullPage: true });
  }, 30_000);

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
  }, 30_000);

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
  }, 30_000);

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
      // No sideways overflow: the page is no wider than the window.
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(width);
      await page.screenshot({ path: join(shots, `dashboard-${width}.png`), fullPage: true });
    }
    await page.setViewportSize({ width: 1600, height: 1000 });
  }, 30_000);

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
      expect(await p3.textContent('#dma-events .dma-event.bounce')).toContain('bounce dev0 bidirectional 6.0 KiB 0x82000000 → 0x80100000');
    } finally {
      await p3.close();
    }
  }, 30_000);

  it('an operator action refused by the API shows its error inline', async () => {
    await mapFromPage('0x40000000', '0x41000000', '0x1000');
    await page.waitForFunction(() => document.querySelector('#action-result .error')?.textContent?.startsWith('ALREADY_MAPPED'));
  }, 30_000);
});
