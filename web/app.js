// The iommud dashboard: topology, the address-space map of a domain, live faults and TLB charts, DMA mappings per
// device, the CPU cache of a buffer, the OMAP TLB and the GART's entries, common actions. Plain ES modules over the
// public API; the token stays in sessionStorage (this tab only).
const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
};
/** Replaces a box's content only when what it shows changed: steady panels keep their nodes (and hover, focus). */
const shown = new Map();
function renderIfChanged(box, key, build) {
  if (shown.get(box) === key) return false;
  shown.set(box, key);
  box.replaceChildren(...[build()].flat(Infinity));
  return true;
}

const state = {
  sid: sessionStorage.getItem('iommud.sid'),
  token: sessionStorage.getItem('iommud.token'),
  session: null,
  revision: -1,
  domain: null,
  extents: [],
  regions: [],
  view: { start: 0, span: 2 ** 32 },
  faults: [],
  tlb: new Map(), // smmu -> {t, rate, misses: per-sample arrays; hits, missTotal: totals}
  lastStats: new Map(),
  smmus: [],
  ws: null,
  selected: null,
  dmaEvents: [], // coherency checks and bounce copies, newest first
  dmaDevices: new Set(), // devices the DMA API has been used on (from `dma` events)
  buffer: null, // the buffer whose cache lines are shown
  gartPage: new Map(), // gart name -> page index of its entry table
  lastSeq: 0, // the last event seen: a (re)connect asks for everything after it, so history shows on login
};

class ApiError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

async function api(method, path, body) {
  const res = await fetch(`/v1/sessions/${state.sid}${path}`, {
    method,
    headers: { authorization: `Bearer ${state.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  if (res.status === 204) return null;
  const json = await res.json();
  if (!res.ok) throw new ApiError(json.error?.code ?? res.status, json.error?.message ?? res.statusText);
  return json;
}

/** Sizes as people say them: 4 KiB, 1 MiB, 1.5 KiB. */
const fmtBytes = (n) => {
  const [v, u] = n >= 2 ** 30 ? [n / 2 ** 30, 'GiB'] : n >= 2 ** 20 ? [n / 2 ** 20, 'MiB'] : n >= 1024 ? [n / 1024, 'KiB'] : [n, 'B'];
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${u}`;
};
const hex = (n) => `0x${n.toString(16)}`;
const PGNAME = { 4096: '4K', 65536: '64K', 1048576: '1M', 16777216: '16M' };

// ---- login ----
$('#login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  state.sid = $('#sid').value.trim();
  state.token = $('#token').value.trim();
  try {
    await api('GET', '/');
    sessionStorage.setItem('iommud.sid', state.sid);
    sessionStorage.setItem('iommud.token', state.token);
    start();
  } catch (err) {
    $('#login-error').textContent = err.message;
  }
});
$('#logout').addEventListener('click', () => {
  sessionStorage.clear();
  location.reload();
});

// ---- registers, by family ----
const bitsText = (bits, hexv) => {
  const v = Number(hexv) >>> 0;
  return v ? bits.filter(([b]) => (v & b) >>> 0).map(([, n]) => n).join('|') || hexv : 'clear';
};
const FSR_BITS = [[0x2, 'TF'], [0x4, 'AFF'], [0x8, 'APF'], [0x10, 'TLBMF'], [0x20, 'HTWDEEF'], [0x40, 'HTWSEEF'], [0x80, 'MHF'], [0x40000000, 'SS'], [0x80000000, 'MULTI']];
const OMAP_IRQ_BITS = [[0x1, 'TLBMISS'], [0x2, 'TRANSLATIONFAULT'], [0x4, 'EMUMISS'], [0x8, 'TABLEWALKFAULT'], [0x10, 'MULTIHITFAULT']];
const GART_INT_BITS = [[0x80, 'INVALID_GART_PAGE']];
/** The fault status register each family reports in: FSR (msm), IRQSTATUS (omap), MC_INTSTATUS (gart). */
const STATUS = { msm: ['FSR', FSR_BITS], omap: ['IRQSTATUS', OMAP_IRQ_BITS], gart: ['MC_INTSTATUS', GART_INT_BITS] };
const statusOf = (family, regs) => {
  const [name, bits] = STATUS[family] ?? STATUS.msm;
  return { name, value: regs[name], text: bitsText(bits, regs[name] ?? '0x0') };
};

/** Register fields by name (HARDWARE.md): [register, [[name, shift, width]...]]; one-bit fields print by name. */
const FIELDS = {
  msm: {
    SCTLR: [['M', 0, 1], ['TRE', 1, 1], ['AFE', 2, 1], ['HAF', 3, 1], ['BE', 4, 1], ['AFFD', 5, 1]],
    ACTLR: [['CFERE', 0, 1], ['CFEIE', 1, 1], ['TLBMCFG', 12, 2], ['CFCFG', 14, 1], ['V2PCFG', 16, 2]],
    CONTEXTIDR: [['ASID', 0, 8], ['PROCID', 8, 24]],
    FSYNR0: [['AMID', 0, 8], ['APID', 8, 5], ['ABID', 13, 3], ['ATID', 24, 8]],
    FSYNR1: [['APRIV', 5, 1], ['AINST', 7, 1], ['AWRITE', 8, 1]],
  },
  omap: {
    CNTL: [['MMU_EN', 1, 1], ['TWL_EN', 2, 1]],
    LOCK: [['BASE', 10, 5], ['VICTIM', 4, 5]],
    CAM: [['P', 3, 1], ['V', 2, 1], ['PGSZ', 0, 2]],
  },
  gart: {
    GART_CONFIG: [['ENABLE', 0, 1]],
    GART_ENTRY_DATA: [['VALID', 31, 1]],
    MC_GART_ERROR_REQ: [['WRITE', 0, 1], ['CLIENT', 1, 6]],
  },
};
const field = (v, shift, width) => Math.floor(v / 2 ** shift) % 2 ** width;
function decodeRegister(family, name, hexv) {
  const v = Number(hexv);
  if (!Number.isFinite(v)) return '';
  const status = STATUS[family] ?? STATUS.msm;
  if (name === status[0]) return bitsText(status[1], hexv);
  if (family === 'omap' && name === 'IRQENABLE') return bitsText(OMAP_IRQ_BITS, hexv);
  // TTBR0 / TTB hold the L1 table's physical address in bits 31:14 (16 KiB aligned).
  if (name === 'TTBR0' || name === 'TTB') return `base 0x${(v - (v % 2 ** 14)).toString(16).padStart(8, '0')}`;
  if (name === 'GART_ENTRY_DATA' && v >= 2 ** 31) return `VALID pa ${hex(v % 2 ** 31 - (v % 4096))}`;
  const f = FIELDS[family]?.[name];
  if (!f) return '';
  return f.map(([n, sh, w]) => (w === 1 ? (field(v, sh, w) ? n : '') : `${n}=${field(v, sh, w)}`)).filter(Boolean).join(' ') || '-';
}

// ---- overview and topology ----
async function refreshOverview() {
  const s = await api('GET', '/');
  state.session = s;
  $('#session-label').textContent = `${s.name} (${s.profile}) · ${s.id}`;
  const coherency = s.cpuCache ? Object.entries(s.coherency ?? {}).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`) : [];
  renderIfChanged($('#overview'), JSON.stringify([s.revision, s.domains, s.subscribers, s.lastSeq, s.pools, coherency, s.bounce]), () => [
    el('span', {}, `revision ${s.revision} · ${s.domains} domains · ${s.subscribers} subscribers · last event ${s.lastSeq} · `),
    el('span', { class: 'dim' }, s.pools.map((p) => `${p.name}: ${fmtBytes(p.used)} used`).join(' · ')),
    s.cpuCache ? el('span', { class: 'dim' }, ` · CPU cache ${s.cpuCache.lines} × ${s.cpuCache.lineSize} B lines`) : '',
    s.bounce ? el('span', { class: 'dim' }, ` · bounce pool ${s.bounce.used}/${s.bounce.slots} slots`) : '',
    coherency.length ? el('span', { class: 'warn' }, ` · coherency: ${coherency.join(', ')}`) : '',
  ]);
  $('#cache-card').hidden = !s.cpuCache;
  const changed = s.revision !== state.revision;
  state.revision = s.revision;
  return changed;
}

/** Once a second: the session, then the hardware; what the revision says changed (CPU loads and MMIO writes have no
 * event of their own) is fetched again, after the hardware view so that it is at least as new as the revision. */
async function poll() {
  const changed = await refreshOverview();
  const hardware = await refreshTopology();
  // The OMAP TLB and the GART's entries also change with the hardware view (TLB fills need not raise the revision).
  if (changed) await Promise.all([refreshDma(), refreshCache(), refreshFamilies()]);
  else if (hardware) await refreshFamilies();
}

async function refreshTopology() {
  const smmus = await api('GET', '/smmus');
  state.smmus = smmus;
  sampleTlb(smmus);
  const changed = renderIfChanged($('#topology'), JSON.stringify([smmus, state.selected]), () => smmus.map((s) => {
    const d = s.details ?? {};
    const extra = s.family === 'gart' ? ` · aperture ${d.aperture?.base} +${fmtBytes(d.aperture?.size ?? 0)} · ${d.validEntries}/${d.entries} entries valid`
      : s.family === 'omap' ? ` · TLB ${s.tlb.entries}/${s.tlb.capacity} · LOCK base ${d.lock?.base} victim ${d.lock?.victim}`
        : ` · TLB ${s.tlb.entries}/${s.tlb.capacity ?? '?'} · ${s.tlb.hits} hits ${s.tlb.misses} misses`;
    return el('div', { class: 'smmu', 'data-smmu': s.name },
      el('h3', {}, `${s.name} `, el('span', { class: `badge fam-${s.family ?? 'msm'}` }, s.family ?? 'msm'), ' ', el('span', { class: 'dim' }, `${s.base ?? ''}${extra}`)),
      s.contexts.map((c) => {
        const selected = state.selected?.[0] === s.name && state.selected?.[1] === c.index && state.selected?.[2] === (c.device ?? '');
        const st = statusOf(s.family, c.registers);
        return [
          el('div', {
            class: `ctx${c.enabled ? ' enabled' : ''}${Number(st.value) ? ' fault' : ''}${selected ? ' selected' : ''}`,
            'data-device': c.device ?? '',
            onclick: () => showContext(s.name, c.index, c.device ?? ''),
          },
          el('span', {}, `${c.index}: ${c.device ?? '(unnamed)'} `, el('span', { class: 'dim' }, `MIDs ${c.mids.map((m) => (s.family === 'gart' ? hex(m) : m)).join(',') || '-'}`)),
          el('span', { class: 'dim' }, `${c.enabled ? (c.domain ?? (s.family === 'gart' ? 'GART entries' : 'on')) : 'bypass'} · ${st.name} ${st.text}${c.stalls.length ? ` · ${c.stalls.length} stalled` : ''}`)),
          selected ? contextDetail(s, c) : '',
        ];
      }),
    );
  }));
  drawCharts();
  return changed;
}

/** The selected context's registers, drawn right under its row so they are in view where the user clicked. */
function contextDetail(smmu, c) {
  return el('div', { id: 'context-detail', class: 'ctx-detail' },
    el('h3', {}, `${smmu.name} / ${c.device ?? c.index} registers `, el('span', { class: 'dim' }, c.faultMode ? `fault mode ${c.faultMode}` : '')),
    el('table', { class: 'regs' }, Object.entries(c.registers).map(([k, v]) => el('tr', { 'data-reg': k }, el('td', {}, k), el('td', {}, v), el('td', { class: 'decoded' }, decodeRegister(smmu.family ?? 'msm', k, v))))),
    c.stalls.length
      ? el('div', { class: 'stalls' }, c.stalls.map((st) =>
        el('div', { class: 'stall', 'data-stall': st.stall },
          el('code', {}, `${st.stall} ${st.access ?? ''} @${st.iova} `),
          ['retry', 'terminate'].map((action) => el('button', { class: `resume-${action}`, onclick: (e) => resumeStall(e, smmu.name, c.index, st.stall, action) }, action)))))
      : '',
  );
}
async function resumeStall(e, smmu, index, stall, action) {
  e.stopPropagation();
  try {
    const r = await api('POST', `/smmus/${smmu}/contexts/${index}/resume`, { stall, action });
    $('#action-result')?.replaceChildren(el('span', { class: 'ok' }, `${stall} ${action}: ${r.outcome ?? JSON.stringify(r)}`));
  } catch (err) {
    $('#action-result')?.replaceChildren(el('span', { class: 'error' }, err.message));
  }
  await refreshTopology();
}

async function showContext(smmu, index, device) {
  const same = state.selected?.[0] === smmu && state.selected?.[1] === index && state.selected?.[2] === device;
  state.selected = same ? null : [smmu, index, device];
  await refreshTopology();
  document.getElementById('context-detail')?.scrollIntoView({ block: 'nearest' });
}

// ---- TLB charts (uPlot): hit rate and misses per IOMMU, one sample a second ----
/** Twelve hues far apart, one per IOMMU (msm8x60 has twelve). */
const TLB_COLORS = ['#4fb3ff', '#5fd38d', '#f59e0b', '#a855f7', '#ff6b6b', '#22d3ee', '#eab308', '#f472b6', '#84cc16', '#fb923c', '#94a3b8', '#14b8a6'];
const SAMPLES = 600;
function sampleTlb(smmus) {
  const now = Date.now() / 1000;
  for (const s of smmus) {
    const prev = state.lastStats.get(s.name);
    const d = prev ? { hits: s.tlb.hits - prev.hits, misses: s.tlb.misses - prev.misses } : null;
    state.lastStats.set(s.name, s.tlb);
    const series = state.tlb.get(s.name) ?? { t: [], rate: [], misses: [], hits: 0, missTotal: 0 };
    series.t.push(now);
    // The first sample has no interval before it: a gap, not a zero.
    series.rate.push(d && d.hits + d.misses ? d.hits / (d.hits + d.misses) : null);
    series.misses.push(d ? d.misses : null);
    series.hits = s.tlb.hits;
    series.missTotal = s.tlb.misses;
    if (series.t.length > SAMPLES) (series.t.shift(), series.rate.shift(), series.misses.shift());
    state.tlb.set(s.name, series);
  }
}
const charts = { rate: null, misses: null };
// Read-only handle for the end-to-end test and the browser console (the charts' series are not in the DOM).
window.iommudDashboard = { state, charts };
function drawCharts() {
  const names = [...state.tlb.keys()];
  if (!names.length || !window.uPlot) return;
  renderTlbLegend(names);
  const t = state.tlb.get(names[0]).t;
  for (const [key, box, range] of [['rate', '#chart-rate', [0, 1]], ['misses', '#chart-misses', null]]) {
    const data = [t, ...names.map((n) => state.tlb.get(n)[key].slice(-t.length))];
    let c = charts[key];
    if (c && c.series.length !== names.length + 1) (c.destroy(), (c = null));
    if (!c) {
      const opts = {
        width: Math.max(200, $(box).clientWidth),
        height: 140,
        legend: { show: false },
        scales: { y: range ? { range } : { range: (_u, _min, max) => [0, Math.max(1, max)] } },
        series: [{}, ...names.map((n, i) => ({ label: n, stroke: TLB_COLORS[i % TLB_COLORS.length], width: 1.5, spanGaps: key === 'rate' }))],
        axes: [{ stroke: '#8a98a8', grid: { stroke: '#26323f' } }, { stroke: '#8a98a8', grid: { stroke: '#26323f' }, size: 40 }],
      };
      c = charts[key] = new uPlot(opts, data, $(box));
    } else c.setData(data);
  }
}
// The charts follow their box's width (the layout changes between 1024 and 1920 px).
const chartResize = new ResizeObserver(() => {
  for (const [key, box] of [['rate', '#chart-rate'], ['misses', '#chart-misses']]) charts[key]?.setSize({ width: Math.max(200, $(box).clientWidth), height: 140 });
});
chartResize.observe($('#tlb-card'));
/** The charts' legend with the values now: totals and hit rate per IOMMU, without hovering. */
function renderTlbLegend(names) {
  renderIfChanged($('#tlb-legend'), JSON.stringify(names.map((n) => [n, state.tlb.get(n).hits, state.tlb.get(n).missTotal])), () => names.map((n, i) => {
    const s = state.tlb.get(n);
    const total = s.hits + s.missTotal;
    return el('span', { class: 'tlb-item', 'data-smmu': n },
      el('span', { class: 'sw', style: `background:${TLB_COLORS[i % TLB_COLORS.length]}` }), `${n}: ${s.hits} hits · ${s.missTotal} misses · ${total ? ((100 * s.hits) / total).toFixed(0) + '%' : '-'}`);
  }));
}

// ---- address-space map ----
const COLORS = { 4096: [59, 130, 246], 65536: [34, 197, 94], 1048576: [245, 158, 11], 16777216: [168, 85, 247] };
const canvas = $('#map');
const ctx2d = canvas.getContext('2d');
const strip = $('#map-overview');
const stripCtx = strip.getContext('2d');
const SPACE = 2 ** 32;
/** Extents closer than this on the overview strip (4 px of it) form one region. */
const REGION_GAP = 16 * 2 ** 20;

async function refreshDomains() {
  const domains = await api('GET', '/domains');
  const sel = $('#domain-select');
  const cur = state.domain;
  renderIfChanged(sel, JSON.stringify(domains.map((d) => [d.id, d.label, d.attached, d.mappedBytes, d.family])), () =>
    domains.map((d) => el('option', { value: d.id }, `${d.id} ${d.label ?? ''} ${d.family ?? ''} [${d.attached.join(', ')}] ${fmtBytes(d.mappedBytes)}`)));
  state.domain = domains.some((d) => d.id === cur) ? cur : (domains[0]?.id ?? null);
  if (state.domain) sel.value = state.domain;
  // An empty session: say what to do first instead of letting the actions fail with NOT_FOUND.
  $('#empty-hint').hidden = domains.length > 0;
  await refreshMap();
}
$('#domain-select').addEventListener('change', (e) => {
  state.domain = e.target.value;
  refreshMap();
});

async function refreshMap() {
  state.extents = state.domain ? await api('GET', `/domains/${state.domain}/mappings?limit=100000`) : [];
  for (const x of state.extents) {
    x.start = Number(x.iova);
    x.end = x.start + x.size;
  }
  // Regions: runs of extents with small gaps between them, what the overview's marks jump to.
  state.regions = [];
  for (const x of state.extents) {
    const r = state.regions.at(-1);
    if (r && x.start - r.end <= REGION_GAP) (r.end = x.end, (r.bytes += x.size), r.count++);
    else state.regions.push({ start: x.start, end: x.end, bytes: x.size, count: 1 });
  }
  renderExtents();
  renderRegions();
  drawMap();
}

const MAX_ROWS = 500;
/** The extents as a table beside the map; a row zooms the map onto its extent (a small mapping becomes big). */
function renderExtents() {
  const rows = state.extents.slice(0, MAX_ROWS);
  renderIfChanged($('#extents'), JSON.stringify(rows.map((x) => [x.iova, x.size, x.paddr, x.pageSize, x.prot])) + state.extents.length, () => [
    el('tr', {}, el('th', {}, 'iova'), el('th', {}, 'size'), el('th', {}, 'paddr'), el('th', {}, 'pages'), el('th', {}, 'prot')),
    rows.length
      ? rows.map((x) => el('tr', { class: 'extent', 'data-iova': x.iova, onclick: () => zoomTo(x) },
        el('td', {}, x.iova), el('td', {}, fmtBytes(x.size)), el('td', {}, x.paddr), el('td', {}, PGNAME[x.pageSize] ?? fmtBytes(x.pageSize)), el('td', { title: x.prot.join(', ') }, protShort(x.prot))))
      : el('tr', {}, el('td', { colspan: 5, class: 'dim' }, 'no mappings')),
    state.extents.length > MAX_ROWS ? el('tr', {}, el('td', { colspan: 5, class: 'dim' }, `… ${state.extents.length - MAX_ROWS} more`)) : '',
  ]);
}
const protShort = (p) => (p.includes('read') ? 'r' : '-') + (p.includes('write') ? 'w' : '-') + (p.includes('noexec') ? '' : 'x') + p.filter((f) => !['read', 'write', 'noexec'].includes(f)).map((f) => ` ${f}`).join('');

/** One button per populated region: the way from the 4 GiB overview to a small mapping. */
function renderRegions() {
  const shownRegions = state.regions.slice(0, 24);
  renderIfChanged($('#regions'), JSON.stringify(shownRegions), () => [
    state.regions.length ? el('span', { class: 'dim' }, 'mapped regions: ') : '',
    shownRegions.map((r) => el('button', { class: 'region', 'data-start': hex(r.start), title: `${r.count} extents`, onclick: () => zoomTo(r) }, `${hex(r.start)} · ${fmtBytes(r.bytes)}`)),
    state.regions.length > shownRegions.length ? el('span', { class: 'dim' }, ` +${state.regions.length - shownRegions.length} more`) : '',
  ]);
}

/** Zooms onto a range: the smallest power-of-two window that holds it with room around, at least 1 byte a pixel. */
function zoomTo(x) {
  const px = canvas.width * canvas.height;
  let span = Math.min(SPACE, Math.max(px, 2 ** Math.ceil(Math.log2((x.end - x.start) * 2))));
  let start;
  for (;;) {
    const granule = span / 16;
    start = Math.min(SPACE - span, Math.floor(x.start / granule) * granule);
    if (start + span >= x.end || span === SPACE) break;
    span *= 2;
  }
  state.view = { start, span };
  drawMap();
}

/** The 4 GiB space (or the zoomed window) drawn one address range per pixel, row by row: a canvas, not DOM. */
function drawMap() {
  const w = canvas.width;
  const h = canvas.height;
  const img = ctx2d.createImageData(w, h);
  const px = img.data;
  for (let i = 3; i < px.length; i += 4) px[i] = 255;
  const { start, span } = state.view;
  const per = span / (w * h);
  // Faint rules at each sixteenth of the window (256 MiB at full view), so an empty space still has a scale.
  for (let row = h / 16; row < h; row += h / 16) {
    for (let o = row * w * 4; o < (row + 1) * w * 4; o += 4) (px[o] = 30), (px[o + 1] = 40), (px[o + 2] = 52);
  }
  for (const x of state.extents) {
    if (x.end <= start || x.start >= start + span) continue;
    const a = Math.max(0, Math.floor((x.start - start) / per));
    const b = Math.min(w * h, Math.ceil((x.end - start) / per));
    const [r, g, bl] = COLORS[x.pageSize] ?? [200, 200, 200];
    const ro = !x.prot.includes('write');
    for (let p = a; p < b; p++) {
      const o = p * 4;
      px[o] = ro ? (r + 255) >> 1 : r;
      px[o + 1] = ro ? (g + 255) >> 1 : g;
      px[o + 2] = ro ? (bl + 255) >> 1 : bl;
    }
  }
  ctx2d.putImageData(img, 0, 0);
  $('#map-range').textContent = `showing ${hex(start)} – ${hex(start + span)} (${fmtBytes(per)} per pixel, ${state.extents.length} extents; rules every ${fmtBytes(span / 16)})`;
  // The region on show is marked among the region buttons.
  for (const b of document.querySelectorAll('#regions button.region')) b.classList.toggle('current', span < SPACE && Number(b.dataset.start) >= start && Number(b.dataset.start) < start + span);
  drawStrip();
}

/** The overview strip: all 4 GiB in one row, each extent at least 3 px wide so that a 1 MiB mapping shows. */
const STRIP_MIN = 3;
const stripRange = (x) => {
  const per = SPACE / strip.width;
  const a = Math.floor(x.start / per);
  return [a, Math.max(a + STRIP_MIN, Math.ceil(x.end / per))];
};
function drawStrip() {
  const w = strip.width;
  const h = strip.height;
  stripCtx.fillStyle = '#0b0f13';
  stripCtx.fillRect(0, 0, w, h);
  for (const x of state.extents) {
    const [a, b] = stripRange(x);
    const [r, g, bl] = COLORS[x.pageSize] ?? [200, 200, 200];
    stripCtx.fillStyle = `rgb(${r},${g},${bl})`;
    stripCtx.fillRect(a, 2, b - a, h - 4);
  }
  // The window the big map shows.
  const { start, span } = state.view;
  if (span < SPACE) {
    const [a, b] = stripRange({ start, end: start + span });
    stripCtx.strokeStyle = '#ffffff';
    stripCtx.strokeRect(a + 0.5, 0.5, Math.max(1, b - a - 1), h - 1);
  }
}
function stripHit(ev) {
  const r = strip.getBoundingClientRect();
  const x = Math.floor(((ev.clientX - r.left) / r.width) * strip.width);
  let best = null;
  let dist = Infinity;
  for (const e of state.extents) {
    const [a, b] = stripRange(e);
    const d = x < a ? a - x : x >= b ? x - b + 1 : 0;
    if (d < dist) (best = e, (dist = d));
  }
  return { x, extent: best, dist };
}
strip.addEventListener('mousemove', (ev) => {
  const { extent, dist, x } = stripHit(ev);
  showInfo(extent && dist <= 2 ? `extent ${extent.iova} +${fmtBytes(extent.size)} → paddr ${extent.paddr} · ${extent.prot.join(',')} · ${PGNAME[extent.pageSize]} pages · click to zoom` : `around ${hex(Math.floor((x / strip.width) * SPACE))} — nothing mapped`, extent && dist <= 2 ? extent.start : null);
});
// A click jumps to the populated region nearest to it.
strip.addEventListener('click', (ev) => {
  const { extent } = stripHit(ev);
  const region = extent && state.regions.find((r) => extent.start >= r.start && extent.end <= r.end);
  if (region) zoomTo(region);
});

function showInfo(text, iova) {
  const info = $('#map-info');
  info.textContent = text;
  if (iova === null) delete info.dataset.iova;
  else info.dataset.iova = hex(iova);
}
/** The canvas pixel under the pointer, as an index into the row-major raster. */
function pixelAt(ev) {
  const r = canvas.getBoundingClientRect();
  const x = Math.min(canvas.width - 1, Math.floor(((ev.clientX - r.left) / r.width) * canvas.width));
  const y = Math.min(canvas.height - 1, Math.floor(((ev.clientY - r.top) / r.height) * canvas.height));
  return y * canvas.width + x;
}
const iovaAt = (ev) => state.view.start + pixelAt(ev) * (state.view.span / (canvas.width * canvas.height));
function hover(ev) {
  const iova = iovaAt(ev);
  let lo = 0;
  let hi = state.extents.length - 1;
  let hit = null;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const x = state.extents[mid];
    if (iova < x.start) hi = mid - 1;
    else if (iova >= x.end) lo = mid + 1;
    else {
      hit = x;
      break;
    }
  }
  showInfo(hit
    ? `iova ${hex(iova)} → paddr ${hex(Number(hit.paddr) + (iova - hit.start))} · ${hit.prot.join(',')} · ${PGNAME[hit.pageSize]} pages · extent ${hit.iova} +${fmtBytes(hit.size)}`
    : `iova ${hex(iova)} — not mapped`, iova);
}
canvas.addEventListener('mousemove', hover);
// Zoom ×2 a notch, keeping the address under the cursor where it is (spans and starts stay whole bytes).
canvas.addEventListener('wheel', (ev) => {
  ev.preventDefault();
  const p = pixelAt(ev);
  const px = canvas.width * canvas.height;
  const at = state.view.start + p * (state.view.span / px);
  const span = Math.min(SPACE, Math.max(px, ev.deltaY < 0 ? state.view.span / 2 : state.view.span * 2));
  const start = Math.min(SPACE - span, Math.max(0, at - p * (span / px)));
  state.view = { start, span };
  drawMap();
  hover(ev);
});
canvas.addEventListener('dblclick', () => {
  state.view = { start: 0, span: SPACE };
  drawMap();
});

// ---- actions: forms whose controls carry their labels ----
const labelled = (text, control) => el('label', { class: 'field' }, el('span', { class: 'field-name' }, text), control);
function renderActions() {
  const devices = state.smmus.flatMap((s) => s.contexts.map((c) => c.device)).filter(Boolean);
  const contexts = state.smmus.flatMap((s) => s.contexts.map((c) => [`${s.name}/${c.index}`, `${s.name}/${c.device ?? c.index}`]));
  const msg = el('div', { id: 'action-result' });
  const run = (fn) => async (e) => {
    e.preventDefault();
    try {
      const r = await fn(new FormData(e.target));
      msg.replaceChildren(el('span', { class: 'ok' }, r ?? 'done'));
      await Promise.all([refreshDomains(), poll()]);
    } catch (err) {
      msg.replaceChildren(el('span', { class: 'error' }, err.message));
    }
  };
  const did = () => {
    if (!state.domain) throw new Error('no domain yet: alloc a domain first (the "alloc domain" button), then attach a device');
    return state.domain;
  };
  const row = (title, attrs, onsubmit, ...controls) => el('form', { class: 'actions-row', ...attrs, onsubmit: run(onsubmit) }, el('span', { class: 'row-title' }, title), ...controls);
  const deviceSelect = () => el('select', { name: 'device' }, devices.map((d) => el('option', {}, d)));
  const contextSelect = () => el('select', { name: 'ctx' }, contexts.map(([v, t]) => el('option', { value: v }, t)));
  const addr = (name, hint) => el('input', { name, placeholder: hint, autocomplete: 'off' });
  const prot = ['read', 'write', 'noexec', 'cache', 'mmio', 'priv'];
  $('#actions').replaceChildren(
    row('domain', {}, async () => `allocated ${(await api('POST', '/domains', {})).id}`, el('button', { id: 'alloc-domain' }, 'alloc domain')),
    row('attach', { id: 'attach-form' }, async (f) => (await api('POST', `/domains/${did()}/${f.get('op')}`, { device: f.get('device') }), `${f.get('op')} ${f.get('device')}`),
      labelled('device', deviceSelect()), labelled('operation', el('select', { name: 'op' }, el('option', {}, 'attach'), el('option', {}, 'detach'))), el('button', {}, 'apply')),
    row('map', { id: 'map-form' }, async (f) => {
      const r = await api('POST', `/domains/${did()}/map`, { iova: f.get('iova'), paddr: f.get('paddr'), size: f.get('size'), prot: prot.filter((p) => f.get(p)) });
      return `mapped ${r.iova} +${fmtBytes(r.size)}`;
    },
    labelled('iova', addr('iova', '0x10000000')), labelled('paddr', addr('paddr', '0x40000000')), labelled('size', addr('size', '0x100000')),
    // The protection flags and the button wrap together, so a narrow row breaks after the addresses, not before "map".
    el('span', { class: 'prot-group' },
      el('span', { class: 'prot' }, prot.map((p) => el('label', { class: 'check' }, el('input', { type: 'checkbox', name: p, ...(p === 'read' || p === 'write' ? { checked: '' } : {}) }), el('span', {}, p)))),
      el('button', {}, 'map'))),
    row('unmap', { id: 'unmap-form' }, async (f) => `unmapped ${(await api('POST', `/domains/${did()}/unmap`, { iova: f.get('iova'), size: f.get('size') })).unmapped} bytes`,
      labelled('iova', addr('iova', '0x10000000')), labelled('size', addr('size', '0x100000')), el('button', {}, 'unmap')),
    row('TLB', {}, async (f) => (f.get('op') === 'sync'
      ? `sync: ${(await api('POST', `/domains/${did()}/sync`)).invalidated} entries`
      : `flushed ${(await api('POST', `/domains/${did()}/flush`, {})).invalidated} entries`),
    labelled('operation', el('select', { name: 'op' }, el('option', { value: 'flush' }, 'flush (whole domain)'), el('option', { value: 'sync' }, 'iotlb_sync'))), el('button', {}, 'run')),
    row('resume', { id: 'resume-form' }, async (f) => {
      const [smmu, ctx] = String(f.get('ctx')).split('/');
      return JSON.stringify(await api('POST', `/smmus/${smmu}/contexts/${ctx}/resume`, { stall: f.get('stall'), action: f.get('action') }));
    },
    labelled('context', contextSelect()), labelled('stall', addr('stall', 'stall-1')),
    labelled('action', el('select', { name: 'action' }, el('option', {}, 'retry'), el('option', {}, 'terminate'))), el('button', {}, 'resume')),
    row('fault', { id: 'clear-form' }, async (f) => {
      const [smmu, ctx] = String(f.get('ctx')).split('/');
      const c = await api('POST', `/smmus/${smmu}/contexts/${ctx}/clear-fault`, {});
      const st = statusOf(c.family ?? 'msm', c.registers);
      return `${st.name} ${st.value}`;
    }, labelled('context', contextSelect()), el('button', {}, 'clear fault')),
    msg,
  );
}

// ---- DMA API mappings per device ----
async function refreshDma() {
  const devices = [...state.dmaDevices].sort();
  const views = await Promise.all(devices.map((d) => api('GET', `/devices/${d}/dma`).catch(() => null)));
  const live = views.filter((v) => v?.mappings.length);
  const idle = views.filter((v) => v && !v.mappings.length).map((v) => v.device);
  renderIfChanged($('#dma-devices'), JSON.stringify(views), () => [
    devices.length ? '' : el('p', { class: 'dim' }, 'no device has used the DMA API yet (dma_map_single: POST …/devices/:device/dma/map)'),
    live.map((v) => el('div', { class: 'dma-device', 'data-device': v.device },
      el('h3', {}, `${v.device} `, el('span', { class: 'dim' }, `${v.mode} · ${v.domain ?? 'no DMA domain'} · ${v.flushPolicy} · mask ${v.dmaLimit} · ${v.mappings.length} live`)),
      el('table', { class: 'regs' },
        el('tr', {}, ['dma addr', 'size', 'dir', 'owner', 'paddr', 'bounce'].map((h) => el('th', {}, h))),
        v.mappings.map((m) => el('tr', { class: 'dma-mapping', 'data-dma': m.dmaAddr },
          el('td', {}, m.dmaAddr), el('td', {}, fmtBytes(m.size)), el('td', {}, m.dir), el('td', {}, m.owner ?? '-'),
          el('td', {}, m.segments.map((s) => `${s.paddr} +${fmtBytes(s.size)}`).join(', ')),
          el('td', {}, m.bounce ? `${m.bounce.slots} slots @${m.bounce.paddr}` : '-')))))),
    idle.length ? el('p', { class: 'dim dma-idle' }, `no live mappings: ${idle.join(', ')}`) : '',
  ]);
}

// ---- CPU data cache of a buffer ----
const CACHE_CELLS = 512;
async function refreshCache() {
  if (!state.session?.cpuCache) return;
  const buffers = await api('GET', '/buffers');
  const sel = el('select', { id: 'cache-buffer', onchange: (e) => ((state.buffer = e.target.value), refreshCache()) },
    buffers.map((b) => el('option', { value: b.paddr }, `${b.paddr} +${fmtBytes(b.size)} (${b.pool})`)));
  if (!buffers.some((b) => b.paddr === state.buffer)) state.buffer = buffers[0]?.paddr ?? null;
  const buf = buffers.find((b) => b.paddr === state.buffer);
  const cache = buf ? await api('GET', `/cache?paddr=${buf.paddr}&size=${buf.size}`) : null;
  renderIfChanged($('#cache-view'), JSON.stringify([buffers, state.buffer, cache]), () => {
    sel.value = state.buffer ?? '';
    if (!buf) return [el('p', { class: 'dim' }, 'no buffers allocated (POST …/buffers); a buffer\'s cached lines show here')];
    const ls = cache.lineSize;
    const base = Number(buf.paddr);
    const lines = Math.ceil(buf.size / ls);
    const perCell = Math.ceil(lines / CACHE_CELLS);
    const line = new Map(cache.entries.map((e) => [Number(e.paddr), e.dirty ? 'dirty' : 'clean']));
    const cells = [];
    for (let i = 0; i < lines; i += perCell) {
      let st = 'none';
      for (let j = i; j < Math.min(lines, i + perCell); j++) {
        const s = line.get(base + j * ls);
        if (s === 'dirty') st = 'dirty';
        else if (s === 'clean' && st === 'none') st = 'clean';
      }
      cells.push(el('i', { class: `line ${st}`, 'data-paddr': hex(base + i * ls), title: `${hex(base + i * ls)} +${fmtBytes(perCell * ls)}: ${st === 'none' ? 'not cached' : st}` }));
    }
    // Runs of lines in one state, as text: what a driver developer compares with the DMA mapping's range.
    const runs = [];
    for (const e of cache.entries) {
      const p = Number(e.paddr);
      const st = e.dirty ? 'dirty' : 'clean';
      const r = runs.at(-1);
      if (r && r.st === st && r.end === p) r.end = p + ls;
      else runs.push({ start: p, end: p + ls, st });
    }
    const dirty = cache.entries.filter((e) => e.dirty).length;
    return [
      labelled('buffer', sel),
      el('p', { class: 'cache-summary' }, `${lines} lines of ${ls} B: ${cache.entries.length} cached, ${dirty} dirty · cache ${cache.used}/${cache.lines} lines used`),
      el('div', { class: 'cache-lines' }, cells),
      el('div', { class: 'legend' }, el('span', { class: 'sw line-dirty' }), 'dirty (newer than RAM)', el('span', { class: 'sw line-clean' }), 'clean', el('span', { class: 'sw line-none' }), 'not cached', perCell > 1 ? ` · ${perCell} lines a cell` : ''),
      el('ul', { class: 'cache-runs mono' }, runs.map((r) => el('li', { class: r.st }, `${hex(r.start)} +${fmtBytes(r.end - r.start)} ${r.st}`))),
    ];
  });
}

// ---- family internals: the OMAP TLB with its locked entries, the GART's entry table ----
const GART_PAGE = 64;
async function refreshFamilies() {
  const omaps = state.smmus.filter((s) => s.family === 'omap');
  const garts = state.smmus.filter((s) => s.family === 'gart');
  $('#family-card').hidden = !omaps.length && !garts.length;
  if (!omaps.length && !garts.length) return;
  // The GART's entries are the active domain's (HARDWARE.md): read them from its pagetable view.
  const tables = await Promise.all(garts.map((g) => (g.details?.activeDomain ? api('GET', `/domains/${g.details.activeDomain}/pagetable`).catch(() => null) : null)));
  renderIfChanged($('#family-view'), JSON.stringify([omaps.map((o) => o.details), garts.map((g) => g.details), tables, [...state.gartPage]]), () => [
    omaps.map(omapTlb),
    garts.map((g, i) => gartEntries(g, tables[i])),
  ]);
}
function omapTlb(s) {
  const d = s.details ?? { lock: { base: 0, victim: 0 }, tlb: [] };
  return el('div', { class: 'omap-tlb', 'data-smmu': s.name },
    el('h3', {}, `${s.name} TLB `, el('span', { class: 'dim' }, `${d.tlb.length}/32 valid · LOCK.BASE ${d.lock.base} (entries below it are locked) · VICTIM ${d.lock.victim}`)),
    d.tlb.length
      ? el('table', { class: 'regs' },
        el('tr', {}, ['#', 'va', 'pa', 'size', 'state', 'CAM', 'RAM'].map((h) => el('th', {}, h))),
        d.tlb.map((e) => el('tr', { class: `tlb-entry${e.locked ? ' locked' : ''}`, 'data-index': e.index },
          el('td', {}, e.index), el('td', {}, e.va), el('td', {}, e.pa), el('td', {}, fmtBytes(e.size)),
          el('td', { class: 'tlb-state' }, e.locked ? [el('span', { class: 'badge lock' }, 'locked'), ' '] : '', [e.preserved ? 'preserved' : '', e.walker ? 'walker' : 'LD_TLB'].filter(Boolean).join(' ')),
          el('td', {}, e.cam), el('td', {}, e.ram))))
      : el('p', { class: 'dim' }, 'no valid entries'));
}
function gartEntries(s, table) {
  const d = s.details ?? {};
  const base = Number(d.aperture?.base ?? 0);
  const entries = table?.entries ?? [];
  const pages = Math.max(1, Math.ceil(entries.length / GART_PAGE));
  const page = Math.min(state.gartPage.get(s.name) ?? 0, pages - 1);
  const slice = entries.slice(page * GART_PAGE, (page + 1) * GART_PAGE);
  const go = (p) => () => {
    state.gartPage.set(s.name, p);
    refreshFamilies();
  };
  return el('div', { class: 'gart-entries', 'data-smmu': s.name },
    el('h3', {}, `${s.name} entries `, el('span', { class: 'dim' }, `${d.validEntries ?? 0} of ${d.entries ?? 8192} valid · aperture ${d.aperture?.base} +${fmtBytes(d.aperture?.size ?? 0)} · active domain ${d.activeDomain ?? 'none'}`)),
    !d.activeDomain && d.validEntries
      ? el('p', { class: 'warn' }, `${d.validEntries} entries were written over MMIO with no active domain: the API has no read-only route for them yet`)
      : '',
    entries.length
      ? [
        el('div', { class: 'pager' },
          el('button', { class: 'prev', onclick: go(page - 1), disabled: page === 0 ? '' : null }, '◀'),
          el('span', { class: 'page-info' }, `valid entries ${page * GART_PAGE + 1}–${page * GART_PAGE + slice.length} of ${entries.length}`),
          el('button', { class: 'next', onclick: go(page + 1), disabled: page >= pages - 1 ? '' : null }, '▶')),
        el('table', { class: 'regs' },
          el('tr', {}, ['entry', 'iova', 'paddr', 'GART_ENTRY_DATA'].map((h) => el('th', {}, h))),
          slice.map((e) => {
            const pte = Number(e.pte);
            return el('tr', { class: 'gart-entry', 'data-iova': e.iova },
              el('td', {}, (Number(e.iova) - base) / 4096), el('td', {}, e.iova), el('td', {}, hex((pte % 2 ** 31) - (pte % 4096))), el('td', {}, e.pte));
          })),
      ]
      : el('p', { class: 'dim' }, 'no valid entries'));
}

// ---- live events ----
function connectEvents() {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${proto}://${location.host}/v1/sessions/${state.sid}/events?token=${encodeURIComponent(state.token)}&since=${state.lastSeq}`);
  state.ws = ws;
  ws.onopen = () => ($('#conn').className = 'pill on', $('#conn').textContent = 'events: live');
  ws.onclose = () => {
    $('#conn').className = 'pill off';
    $('#conn').textContent = 'events: reconnecting';
    setTimeout(connectEvents, 1000);
  };
  ws.onmessage = (m) => {
    const ev = JSON.parse(m.data);
    if (typeof ev.seq === 'number') state.lastSeq = Math.max(state.lastSeq, ev.seq);
    if (ev.type === 'gap') {
      $('#gaps').textContent = `the browser fell behind: events ${ev.from}–${ev.to} were skipped`;
      return;
    }
    if (ev.type === 'fault') {
      state.faults.unshift(ev);
      state.faults.length = Math.min(state.faults.length, 500);
      renderFaults();
    }
    if (ev.type === 'coherency' || ev.type === 'bounce') {
      state.dmaEvents.unshift(ev);
      state.dmaEvents.length = Math.min(state.dmaEvents.length, 200);
      renderDmaEvents();
    }
    if ((ev.type === 'dma' || ev.type === 'bounce') && ev.device && !state.dmaDevices.has(ev.device)) {
      state.dmaDevices.add(ev.device);
      schedule('dma', refreshDma);
    }
    if (['map', 'unmap', 'attach', 'detach', 'domain', 'sync', 'flush', 'dma'].includes(ev.type)) schedule('domains', refreshDomains);
    if (['dma', 'bounce'].includes(ev.type)) schedule('dma', refreshDma);
    if (['cache', 'memory', 'buffer', 'dma', 'coherency', 'bounce'].includes(ev.type)) schedule('cache', refreshCache);
    if (['map', 'unmap', 'attach', 'detach', 'mmio', 'dma', 'flush'].includes(ev.type)) schedule('families', refreshFamilies);
  };
}
/** One refresh per burst of events (a map of 1,000 pages is 1,000 events). */
const timers = new Map();
/** Per kind, the refresh running or queued last: the next one starts after it. */
const running = new Map();
function schedule(name, fn) {
  if (timers.has(name)) return;
  timers.set(name, setTimeout(() => {
    timers.delete(name);
    // Refreshes of one kind run one after another: an older one, slower to fetch, never renders over a newer one.
    const next = (running.get(name) ?? Promise.resolve()).then(() => fn()).catch(() => {});
    running.set(name, next);
  }, 150));
}

/** A fault in its family's registers: FSR/FAR/FSYNR0 (msm), IRQSTATUS/FAULT_AD (omap), MC_INTSTATUS/GART_ERROR_* (gart). */
function faultRegisters(f) {
  if (f.family === 'omap') return `IRQSTATUS ${f.irqstatus} ${(f.irqstatusBits ?? []).join('|')} FAULT_AD ${f.faultAd}`;
  if (f.family === 'gart') return `MC_INTSTATUS ${f.intstatus} ERROR_REQ ${f.errorReq} (${f.client?.name ?? '?'}) ERROR_ADDR ${f.errorAddr}`;
  return `FSR ${f.fsr} FAR ${f.far} FSYNR0 ${f.fsynr0}`;
}
function renderFaults() {
  const dev = $('#fault-device').value.trim();
  const kind = $('#fault-kind').value;
  const list = state.faults.filter((f) => (!dev || f.device === dev) && (!kind || f.kind === kind)).slice(0, 200);
  if (!list.length) {
    $('#faults').replaceChildren(el('li', { class: 'empty dim' }, state.faults.length ? 'no fault matches the filter' : 'no faults yet'));
    return;
  }
  $('#faults').replaceChildren(
    ...list.map((f) =>
      el('li', { class: 'fault-item' }, el('b', {}, `${f.kind}`), ` ${f.device ?? f.smmu + '/' + f.context} ${f.access} @${f.iova} `, el('span', { class: 'dim mono' }, `${faultRegisters(f)} #${f.seq}${f.stall ? ' ' + f.stall : ''}`)),
    ),
  );
}
/** What each coherency check means for the driver: the call that was missing. */
const COHERENCY_HINT = {
  'stale-cpu-read': 'CPU read a stale cache line: missing dma_sync_single_for_cpu (or unmap) before the read',
  'device-read-stale': 'device read RAM under a dirty line: missing dma_sync_single_for_device (clean) before the transfer',
  'lost-device-write': 'a dirty line written back over device data: buffer shares a line with CPU data, or a missing invalidate',
  'cpu-access-device-owned': 'CPU touched a buffer the device owns: between map/sync-for-device and unmap/sync-for-cpu',
};
/** DMA-API events (non-coherent caches, swiotlb bounce copies): what a driver developer checks after a transfer. */
function renderDmaEvents() {
  if (!state.dmaEvents.length) return $('#dma-events').replaceChildren(el('li', { class: 'empty dim' }, 'no coherency or bounce events'));
  $('#dma-events').replaceChildren(...state.dmaEvents.map((e) =>
    el('li', { class: `dma-event ${e.type}`, 'data-check': e.check ?? null }, el('b', {}, e.type), ' ',
      el('span', { class: 'what' }, e.type === 'bounce'
        ? `${e.device} ${e.dir} ${fmtBytes(e.bytes)} ${e.from} → ${e.to}`
        : `${e.check} ${e.device} @${e.paddr} +${fmtBytes(e.size)}${e.dmaAddr ? ` dma ${e.dmaAddr}` : ''}`),
      el('span', { class: 'dim' }, ` #${e.seq}`),
      COHERENCY_HINT[e.check] ? el('div', { class: 'dim hint-line' }, COHERENCY_HINT[e.check]) : '')));
}
$('#fault-device').addEventListener('input', renderFaults);
$('#fault-kind').addEventListener('change', renderFaults);

async function start() {
  $('#login').hidden = true;
  $('#app').hidden = false;
  $('#logout').hidden = false;
  await poll();
  renderActions();
  await refreshDomains();
  renderFaults();
  renderDmaEvents();
  connectEvents();
  let polling = false;
  setInterval(async () => {
    if (polling) return; // a slow poll is not stacked on another
    polling = true;
    await poll().catch(() => {});
    polling = false;
  }, 1000);
}

if (state.sid && state.token) start().catch(() => sessionStorage.clear());
