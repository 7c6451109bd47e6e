// The iommud dashboard: topology, the address-space map of a domain, live faults and TLB hit rates, common
// actions. Plain ES modules over the public API; the token stays in sessionStorage (this tab only).
const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
};

const state = {
  sid: sessionStorage.getItem('iommud.sid'),
  token: sessionStorage.getItem('iommud.token'),
  domain: null,
  extents: [],
  view: { start: 0, span: 2 ** 32 },
  faults: [],
  tlb: new Map(), // smmu -> {t: [], rate: []}
  lastStats: new Map(),
  ws: null,
  selected: null,
  dmaEvents: [], // coherency checks and bounce copies, newest first
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

// ---- overview and topology ----
const FSR_BITS = [[0x2, 'TF'], [0x4, 'AFF'], [0x8, 'APF'], [0x10, 'TLBMF'], [0x20, 'HTWDEEF'], [0x40, 'HTWSEEF'], [0x80, 'MHF'], [0x40000000, 'SS'], [0x80000000, 'MULTI']];
const fsrText = (hex) => {
  const v = Number(hex);
  return v ? FSR_BITS.filter(([b]) => (v & b) >>> 0).map(([, n]) => n).join('|') : 'clear';
};

async function refreshOverview() {
  const s = await api('GET', '/');
  $('#session-label').textContent = `${s.name} (${s.profile}) · ${s.id}`;
  $('#overview').replaceChildren(
    el('span', {}, `revision ${s.revision} · ${s.domains} domains · ${s.subscribers} subscribers · last event ${s.lastSeq} · `),
    el('span', { class: 'dim' }, s.pools.map((p) => `${p.name}: ${(p.used / 2 ** 20).toFixed(1)} MiB used`).join(' · ')),
  );
}

let lastSmmus = [];
async function refreshTopology() {
  const smmus = await api('GET', '/smmus');
  lastSmmus = smmus;
  const now = Date.now() / 1000;
  const box = el('div');
  for (const s of smmus) {
    const prev = state.lastStats.get(s.name);
    const d = prev ? { hits: s.tlb.hits - prev.hits, misses: s.tlb.misses - prev.misses } : { hits: 0, misses: 0 };
    state.lastStats.set(s.name, s.tlb);
    const series = state.tlb.get(s.name) ?? { t: [], rate: [], hits: 0, misses: 0 };
    series.t.push(now);
    series.rate.push(d.hits + d.misses ? d.hits / (d.hits + d.misses) : null);
    series.hits = s.tlb.hits;
    series.misses = s.tlb.misses;
    if (series.t.length > 120) (series.t.shift(), series.rate.shift());
    state.tlb.set(s.name, series);
    box.append(
      el('div', { class: 'smmu', 'data-smmu': s.name },
        el('h3', {}, `${s.name} `, s.family ? el('span', { class: `badge fam-${s.family}` }, s.family) : '', ' ', el('span', { class: 'dim' }, `${s.base ?? ''} · TLB ${s.tlb.entries}/${s.tlb.capacity ?? '?'} · ${s.tlb.hits} hits ${s.tlb.misses} misses`)),
        s.contexts.map((c) => {
          const selected = state.selected?.[0] === s.name && state.selected?.[1] === c.index;
          return [
            el('div', {
              class: `ctx${c.enabled ? ' enabled' : ''}${Number(c.registers.FSR) ? ' fault' : ''}${selected ? ' selected' : ''}`,
              'data-device': c.device ?? '',
              onclick: () => showContext(s.name, c.index),
            },
            el('span', {}, `${c.index}: ${c.device ?? '(unnamed)'} `, el('span', { class: 'dim' }, `MIDs ${c.mids.join(',') || '-'}`)),
            el('span', { class: 'dim' }, `${c.enabled ? c.domain : 'bypass'} · FSR ${fsrText(c.registers.FSR)}${c.stalls.length ? ` · ${c.stalls.length} stalled` : ''}`)),
            selected ? contextDetail(s.name, c) : '',
          ];
        }),
      ),
    );
  }
  $('#topology').replaceChildren(box);
  drawChart();
}

/** Register fields by name (HARDWARE.md "Context bank registers"): [register, [[name, shift, width]...]]. */
const FIELDS = {
  SCTLR: [['M', 0, 1], ['TRE', 1, 1], ['AFE', 2, 1], ['HAF', 3, 1], ['BE', 4, 1], ['AFFD', 5, 1]],
  ACTLR: [['CFERE', 0, 1], ['CFEIE', 1, 1], ['TLBMCFG', 12, 2], ['CFCFG', 14, 1], ['V2PCFG', 16, 2]],
  CONTEXTIDR: [['ASID', 0, 8], ['PROCID', 8, 24]],
  FSYNR0: [['AMID', 0, 8], ['APID', 8, 5], ['ABID', 13, 3], ['ATID', 24, 8]],
  FSYNR1: [['APRIV', 5, 1], ['AINST', 7, 1], ['AWRITE', 8, 1]],
};
const field = (v, shift, width) => Math.floor(v / 2 ** shift) % 2 ** width;
function decodeRegister(name, hex) {
  const v = Number(hex);
  if (!Number.isFinite(v)) return '';
  if (name === 'FSR') return fsrText(hex);
  // TTBR0 holds the L1 table's physical address in bits 31:14 (16 KiB aligned).
  if (name === 'TTBR0') return `base 0x${(v - (v % 2 ** 14)).toString(16).padStart(8, '0')}`;
  const f = FIELDS[name];
  if (!f) return '';
  return f.map(([n, sh, w]) => (w === 1 ? (field(v, sh, w) ? n : '') : `${n}=${field(v, sh, w)}`)).filter(Boolean).join(' ') || '-';
}

/** The selected context's registers, drawn right under its row so they are in view where the user clicked. */
function contextDetail(smmu, c) {
  return el('div', { id: 'context-detail', class: 'ctx-detail' },
    el('h3', {}, `${smmu} / ${c.device ?? c.index} registers `, el('span', { class: 'dim' }, c.faultMode ? `fault mode ${c.faultMode}` : '')),
    el('table', { class: 'regs' }, Object.entries(c.registers).map(([k, v]) => el('tr', { 'data-reg': k }, el('td', {}, k), el('td', {}, v), el('td', { class: 'decoded' }, decodeRegister(k, v))))),
    c.stalls.length
      ? el('div', { class: 'stalls' }, c.stalls.map((st) =>
        el('div', { class: 'stall', 'data-stall': st.stall },
          el('code', {}, `${st.stall} ${st.access ?? ''} @${st.iova} `),
          ['retry', 'terminate'].map((action) => el('button', { class: `resume-${action}`, onclick: (e) => resumeStall(e, smmu, c.index, st.stall, action) }, action)))))
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

async function showContext(smmu, index) {
  const same = state.selected?.[0] === smmu && state.selected?.[1] === index;
  state.selected = same ? null : [smmu, index];
  await refreshTopology();
  document.getElementById('context-detail')?.scrollIntoView({ block: 'nearest' });
}

// ---- TLB chart (uPlot) ----
let chart = null;
function drawChart() {
  const names = [...state.tlb.keys()];
  if (!names.length || !window.uPlot) return;
  const t = state.tlb.get(names[0]).t;
  const data = [t, ...names.map((n) => state.tlb.get(n).rate.slice(-t.length))];
  if (!chart || chart.series.length !== names.length + 1) {
    chart?.destroy();
    chart = null;
  }
  renderTlbLegend(names);
  if (!chart) {
    const colors = TLB_COLORS;
    chart = new uPlot(
      { width: $('#chart').clientWidth || 300, height: 180, legend: { show: false }, scales: { y: { range: [0, 1] } }, series: [{}, ...names.map((n, i) => ({ label: n, stroke: colors[i % colors.length], spanGaps: true }))], axes: [{ stroke: '#8a98a8' }, { stroke: '#8a98a8' }] },
      data,
      $('#chart'),
    );
  } else chart.setData(data);
}
/** Twelve hues far apart, one per SMMU (msm8x60 has twelve). */
const TLB_COLORS = ['#4fb3ff', '#5fd38d', '#f59e0b', '#a855f7', '#ff6b6b', '#22d3ee', '#eab308', '#f472b6', '#84cc16', '#fb923c', '#94a3b8', '#14b8a6'];
/** The chart's legend with the values now: totals and hit rate per SMMU, without hovering. */
function renderTlbLegend(names) {
  $('#tlb-legend').replaceChildren(...names.map((n, i) => {
    const s = state.tlb.get(n);
    const total = s.hits + s.misses;
    return el('span', { class: 'tlb-item', 'data-smmu': n },
      el('span', { class: 'sw', style: `background:${TLB_COLORS[i % TLB_COLORS.length]}` }), `${n}: ${s.hits} hits · ${s.misses} misses · ${total ? ((100 * s.hits) / total).toFixed(0) + '%' : '-'}`);
  }));
}

// ---- address-space map ----
const COLORS = { 4096: [59, 130, 246], 65536: [34, 197, 94], 1048576: [245, 158, 11], 16777216: [168, 85, 247] };
const canvas = $('#map');
const ctx2d = canvas.getContext('2d');

async function refreshDomains() {
  const domains = await api('GET', '/domains');
  const sel = $('#domain-select');
  const cur = state.domain;
  sel.replaceChildren(...domains.map((d) => el('option', { value: d.id }, `${d.id} ${d.label ?? ''} [${d.attached.join(', ')}] ${(d.mappedBytes / 2 ** 20).toFixed(2)} MiB`)));
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
  drawMap();
  renderExtents();
}

/** The extents as a table beside the map; a row zooms the map onto its extent (a small mapping becomes big). */
function renderExtents() {
  $('#extents').replaceChildren(...[
    el('tr', {}, el('th', {}, 'iova'), el('th', {}, 'size'), el('th', {}, 'paddr'), el('th', {}, 'pages'), el('th', {}, 'prot')),
    state.extents.length
      ? state.extents.map((x) => el('tr', { class: 'extent', 'data-iova': x.iova, onclick: () => zoomTo(x) },
        el('td', {}, x.iova), el('td', {}, fmtBytes(x.size)), el('td', {}, x.paddr), el('td', {}, fmtBytes(x.pageSize)), el('td', {}, x.prot.join(','))))
      : el('tr', {}, el('td', { colspan: 5, class: 'dim' }, 'no mappings')),
  ].flat());
}
function zoomTo(x) {
  const px = canvas.width * canvas.height;
  const span = Math.min(2 ** 32, Math.max(px, 2 ** Math.ceil(Math.log2(x.size * 2))));
  const start = Math.min(2 ** 32 - span, Math.max(0, Math.floor(x.start / span) * span));
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
  $('#map-range').textContent = `showing 0x${start.toString(16)} – 0x${(start + span).toString(16)} (${fmtBytes(per)} per pixel, ${state.extents.length} extents)`;
}
const fmtBytes = (n) => (n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n.toFixed(0)} B`);

function iovaAt(ev) {
  const r = canvas.getBoundingClientRect();
  const x = Math.floor(((ev.clientX - r.left) / r.width) * canvas.width);
  const y = Math.floor(((ev.clientY - r.top) / r.height) * canvas.height);
  const per = state.view.span / (canvas.width * canvas.height);
  return Math.floor(state.view.start + (y * canvas.width + x) * per);
}
canvas.addEventListener('mousemove', (ev) => {
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
  $('#map-info').textContent = hit
    ? `iova 0x${iova.toString(16)} → paddr 0x${(Number(hit.paddr) + (iova - hit.start)).toString(16)} · ${hit.prot.join(',')} · pages of ${fmtBytes(hit.pageSize)} · extent ${hit.iova} +${fmtBytes(hit.size)}`
    : `iova 0x${iova.toString(16)} — not mapped`;
});
canvas.addEventListener('wheel', (ev) => {
  ev.preventDefault();
  const at = iovaAt(ev);
  const span = Math.min(2 ** 32, Math.max(canvas.width * canvas.height, ev.deltaY < 0 ? state.view.span / 4 : state.view.span * 4));
  const start = Math.min(2 ** 32 - span, Math.max(0, at - span / 2));
  state.view = { start: Math.floor(start / 4096) * 4096, span };
  drawMap();
});
canvas.addEventListener('dblclick', () => {
  state.view = { start: 0, span: 2 ** 32 };
  drawMap();
});

// ---- actions ----
function renderActions() {
  const devices = [...document.querySelectorAll('.ctx[data-device]')].map((e) => e.dataset.device).filter(Boolean);
  const msg = el('div', { id: 'action-result' });
  const run = (fn) => async (e) => {
    e.preventDefault();
    try {
      const r = await fn(new FormData(e.target));
      msg.replaceChildren(el('span', { class: 'ok' }, r ?? 'done'));
      await Promise.all([refreshDomains(), refreshTopology(), refreshOverview()]);
    } catch (err) {
      msg.replaceChildren(el('span', { class: 'error' }, err.message));
    }
  };
  const did = () => {
    if (!state.domain) throw new Error('no domain yet: alloc a domain first (the "alloc domain" button), then attach a device');
    return state.domain;
  };
  const deviceSelect = () => el('select', { name: 'device' }, devices.map((d) => el('option', {}, d)));
  const prot = ['read', 'write', 'noexec', 'cache', 'mmio', 'priv'];
  $('#actions').replaceChildren(
    el('form', { class: 'actions-row', onsubmit: run(async () => `allocated ${(await api('POST', '/domains', {})).id}`) }, el('button', { id: 'alloc-domain' }, 'alloc domain')),
    el('form', { class: 'actions-row', id: 'attach-form', onsubmit: run(async (f) => (await api('POST', `/domains/${did()}/${f.get('op')}`, { device: f.get('device') }), `${f.get('op')} ${f.get('device')}`)) },
      deviceSelect(), el('select', { name: 'op' }, el('option', {}, 'attach'), el('option', {}, 'detach')), el('button', {}, 'apply')),
    el('form', { class: 'actions-row', id: 'map-form', onsubmit: run(async (f) => {
      const r = await api('POST', `/domains/${did()}/map`, { iova: f.get('iova'), paddr: f.get('paddr'), size: f.get('size'), prot: prot.filter((p) => f.get(p)) });
      return `mapped ${r.iova} +${fmtBytes(r.size)}`;
    }) },
      el('input', { name: 'iova', placeholder: 'iova 0x…' }), el('input', { name: 'paddr', placeholder: 'paddr 0x…' }), el('input', { name: 'size', placeholder: 'size 0x…' }),
      prot.map((p) => el('label', {}, el('input', { type: 'checkbox', name: p, ...(p === 'read' || p === 'write' ? { checked: '' } : {}) }), p)),
      el('button', {}, 'map')),
    el('form', { class: 'actions-row', onsubmit: run(async (f) => `unmapped ${(await api('POST', `/domains/${did()}/unmap`, { iova: f.get('iova'), size: f.get('size') })).unmapped} bytes`) },
      el('input', { name: 'iova', placeholder: 'iova 0x…' }), el('input', { name: 'size', placeholder: 'size 0x…' }), el('button', {}, 'unmap')),
    el('form', { class: 'actions-row', onsubmit: run(async () => `flushed ${(await api('POST', `/domains/${did()}/flush`, {})).invalidated} entries`) }, el('button', {}, 'flush TLB')),
    el('form', { class: 'actions-row', onsubmit: run(async () => `sync: ${(await api('POST', `/domains/${did()}/sync`)).invalidated} entries`) }, el('button', {}, 'iotlb_sync')),
    el('form', { class: 'actions-row', onsubmit: run(async (f) => {
      const [smmu, ctx] = String(f.get('ctx')).split('/');
      return JSON.stringify(await api('POST', `/smmus/${smmu}/contexts/${ctx}/resume`, { stall: f.get('stall'), action: f.get('action') }));
    }) },
      el('input', { name: 'ctx', placeholder: 'smmu/context' }), el('input', { name: 'stall', placeholder: 'stall-N' }),
      el('select', { name: 'action' }, el('option', {}, 'retry'), el('option', {}, 'terminate')), el('button', {}, 'resume')),
    el('form', { class: 'actions-row', onsubmit: run(async (f) => {
      const [smmu, ctx] = String(f.get('ctx')).split('/');
      return `FSR ${(await api('POST', `/smmus/${smmu}/contexts/${ctx}/clear-fault`, {})).registers.FSR}`;
    }) }, el('input', { name: 'ctx', placeholder: 'smmu/context' }), el('button', {}, 'clear fault')),
    msg,
  );
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
    if (['map', 'unmap', 'attach', 'detach', 'domain', 'sync', 'flush'].includes(ev.type)) scheduleRefresh();
  };
}
let refreshTimer = null;
function scheduleRefresh() {
  refreshTimer ??= setTimeout(async () => {
    refreshTimer = null;
    await refreshDomains();
  }, 150);
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
      el('li', { class: 'fault-item' }, el('b', {}, `${f.kind}`), ` ${f.device ?? f.smmu + '/' + f.context} ${f.access} @${f.iova} `, el('span', { class: 'dim mono' }, `FSR ${f.fsr} FAR ${f.far} FSYNR0 ${f.fsynr0} #${f.seq}${f.stall ? ' ' + f.stall : ''}`)),
    ),
  );
}
/** DMA-API events (non-coherent caches, swiotlb bounce copies): what a driver developer checks after a transfer. */
function renderDmaEvents() {
  $('#dma-events').replaceChildren(...state.dmaEvents.map((e) =>
    el('li', { class: `dma-event ${e.type}` }, el('b', {}, e.type), ' ',
      e.type === 'bounce'
        ? `${e.device} ${e.dir} ${fmtBytes(e.bytes)} ${e.from} → ${e.to}`
        : `${e.check} ${e.device} @${e.paddr} +${fmtBytes(e.size)}${e.dmaAddr ? ` dma ${e.dmaAddr}` : ''}`,
      el('span', { class: 'dim' }, ` #${e.seq}`))));
}
$('#fault-device').addEventListener('input', renderFaults);
$('#fault-kind').addEventListener('change', renderFaults);

async function start() {
  $('#login').hidden = true;
  $('#app').hidden = false;
  $('#logout').hidden = false;
  await Promise.all([refreshOverview(), refreshTopology()]);
  renderActions();
  await refreshDomains();
  renderFaults();
  connectEvents();
  setInterval(() => Promise.all([refreshOverview(), refreshTopology()]).catch(() => {}), 1000);
}

if (state.sid && state.token) start().catch(() => sessionStorage.clear());
