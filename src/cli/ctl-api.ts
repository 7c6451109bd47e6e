/**
 * iommuctl's commands for the rest of the API: hardware (SMMUs, contexts, faults, stalls, MMIO, masters), device
 * access batches, the DMA API, buffers and memory, mappings and iova_to_phys, profiles and version. One command per
 * API.md route, each with --json; descriptions name the IOMMU/DMA API call and the role the route needs.
 */
import { Command, CommanderError, Option } from 'commander';
import { readFileSync, writeFileSync } from 'node:fs';
import type { IommudClient, SessionClient } from '../client/index.js';
import { hex } from '../errors.js';
import { GART_ENTRY_VALID, GART_PAGE_MASK } from '../pgtable/gart.js';
import { IOPGD_SECTION, IOPGD_SUPER, IOPGD_TABLE, IOPTE_LARGE, IOPTE_SMALL } from '../pgtable/omap.js';

export interface CtlContext {
  session(): SessionClient;
  client(): IommudClient;
  out(data: unknown, human: string | (() => string)): void;
  num(v: string): string;
  json(): boolean;
}

const usage = (message: string): never => {
  throw new CommanderError(2, 'iommuctl.usage', message);
};

const DIRS = ['to-device', 'from-device', 'bidirectional'] as const;
type Dir = (typeof DIRS)[number];

/** A fault as the API reports it: the family's own registers beside the common fields. */
export interface FaultFields {
  kind: string;
  family?: string;
  smmu?: string;
  context?: number | string;
  device?: string | null;
  iova?: string;
  fsr?: string;
  fsrBits?: string[];
  far?: string;
  fsynr0?: string;
  fsynr1?: string;
  irqstatus?: string;
  irqstatusBits?: string[];
  faultAd?: string;
  intstatus?: string;
  errorReq?: string;
  errorAddr?: string;
  client?: { id: number; name: string };
}

/** A fault's registers on one line, status bits by name: what the family's driver fault handler would print. */
export function faultLine(f: FaultFields): string {
  const where = f.smmu !== undefined ? ` at ${f.smmu}/${f.context}${f.device ? ` (${f.device})` : ''}` : '';
  const bits = (b?: string[]) => (b?.length ? ` [${b.join(' ')}]` : '');
  let regs: string;
  if (f.irqstatus !== undefined) regs = `IRQSTATUS ${f.irqstatus}${bits(f.irqstatusBits)} FAULT_AD ${f.faultAd}`;
  else if (f.intstatus !== undefined) regs = `MC_INTSTATUS ${f.intstatus} GART_ERROR_REQ ${f.errorReq} GART_ERROR_ADDR ${f.errorAddr}${f.client ? ` client ${f.client.name} (${f.client.id})` : ''}`;
  else regs = `FSR ${f.fsr}${bits(f.fsrBits)} FAR ${f.far}${f.fsynr0 !== undefined ? ` FSYNR0 ${f.fsynr0}` : ''}${f.fsynr1 !== undefined ? ` FSYNR1 ${f.fsynr1}` : ''}`;
  return `${f.kind} fault${where}: ${regs}`;
}

/** Classic 16-bytes-a-line hex dump with the address of each line. */
export function hexdump(base: number, bytes: Uint8Array): string {
  const lines: string[] = [];
  for (let off = 0; off < bytes.length; off += 16) {
    const row = bytes.subarray(off, off + 16);
    const hexs = [...row].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    const ascii = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${(base + off).toString(16).padStart(8, '0')}  ${hexs.padEnd(47)}  |${ascii}|`);
  }
  return lines.join('\n');
}

/** Prometheus text exposition as samples (comments and HELP/TYPE lines dropped). */
export function promSamples(text: string): Array<{ name: string; labels: Record<string, string>; value: number }> {
  const samples: Array<{ name: string; labels: Record<string, string>; value: number }> = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, ch: string) => (ch === 'n' ? '\n' : ch));
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

const readJsonFile = (file: string): unknown => {
  let text: string;
  try {
    text = file === '-' ? readFileSync(0, 'utf8') : readFileSync(file, 'utf8');
  } catch (e) {
    return usage(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch {
    return usage(`${file} is not JSON`);
  }
};

const SID = '/v1/sessions/:sid';
const CTX = `${SID}/smmus/:smmu/contexts/:ctx`;
const DOM = `${SID}/domains/:did`;
const DEV = `${SID}/devices/:device`;
/**
 * The API routes each command calls, by command path: docs/cli.md is made from this table and the command tree
 * (`iommuctl routes --markdown`), and a test checks that every route the daemon serves has a command here.
 * An empty list: the command works locally (the config file, completion).
 */
export const COMMAND_ROUTES: Readonly<Record<string, readonly string[]>> = {
  health: ['GET /health'],
  metrics: ['GET /metrics'],
  version: ['GET /v1/version'],
  profiles: ['GET /v1/profiles'],
  'session create': ['POST /v1/sessions'],
  'session show': [`GET ${SID}`],
  'session delete': [`DELETE ${SID}`],
  'session token': [`POST ${SID}/tokens`],
  'trace export': [`GET ${SID}/trace`],
  'trace replay': ['POST /v1/sessions'],
  watch: [`GET ${SID}/events`],
  smmus: [`GET ${SID}/smmus`],
  'context show': [`GET ${CTX}`],
  'context config': [`PATCH ${CTX}`],
  'fault clear': [`POST ${CTX}/clear-fault`],
  'fault inject': [`POST ${CTX}/inject-fault`],
  resume: [`POST ${CTX}/resume`],
  'mmio read': [`GET ${SID}/smmus/:smmu/mmio/:offset`],
  'mmio write': [`PUT ${SID}/smmus/:smmu/mmio/:offset`],
  'mmio batch': [`POST ${SID}/smmus/:smmu/mmio`],
  'master-access': [`POST ${SID}/smmus/:smmu/masters/:mid/access`],
  'domain alloc': [`POST ${SID}/domains`],
  'domain show': [`GET ${SID}/domains`, `GET ${DOM}`],
  'domain free': [`DELETE ${DOM}`],
  'domain attach': [`POST ${DOM}/attach`],
  'domain detach': [`POST ${DOM}/detach`],
  'domain map': [`POST ${DOM}/map`],
  'domain unmap': [`POST ${DOM}/unmap`],
  'domain batch': [`POST ${DOM}/batch`],
  'domain flush': [`POST ${DOM}/flush`],
  'domain sync': [`POST ${DOM}/sync`],
  'domain pagetable': [`GET ${DOM}/pagetable`],
  mappings: [`GET ${DOM}/mappings`],
  'iova-to-phys': [`GET ${DOM}/iova-to-phys/:iova`],
  access: [`POST ${DEV}/access`],
  'access-batch': [`POST ${DEV}/access-batch`],
  'bench-rig': [`GET ${DEV}/stream`],
  'dma show': [`GET ${DEV}/dma`],
  'dma config': [`PATCH ${DEV}/dma`],
  'dma map': [`POST ${DEV}/dma/map`],
  'dma map-sg': [`POST ${DEV}/dma/map-sg`],
  'dma unmap': [`POST ${DEV}/dma/unmap`],
  'dma sync': [`POST ${DEV}/dma/sync`],
  'buffer alloc': [`POST ${SID}/buffers`],
  'buffer free': [`DELETE ${SID}/buffers/:paddr`],
  'buffer list': [`GET ${SID}/buffers`],
  pools: [`GET ${SID}/pools`],
  'memory read': [`GET ${SID}/memory`],
  'memory write': [`PUT ${SID}/memory`],
  'cache show': [`GET ${SID}/cache`],
  'cache clean': [`POST ${SID}/cache/clean`],
  'cache invalidate': [`POST ${SID}/cache/invalidate`],
  'cache flush': [`POST ${SID}/cache/flush`],
  use: [],
  'config set-context': [],
  'config get-contexts': [],
  'config delete-context': [],
  completion: [],
  routes: [],
};

/** One command of the tree with the routes it calls (what `routes --json` prints). */
export interface CommandRow {
  command: string;
  description: string;
  arguments: Array<{ name: string; description: string; required: boolean }>;
  routes: string[];
}

/** Every command that runs (the leaves of the tree), in the order help lists them. */
export function commandRows(program: Command): CommandRow[] {
  const rows: CommandRow[] = [];
  const walk = (cmd: Command, path: string) => {
    if (cmd.commands.length === 0) {
      rows.push({
        command: path,
        description: cmd.description(),
        arguments: cmd.registeredArguments.map((a) => ({ name: a.name(), description: a.description, required: a.required })),
        routes: [...(COMMAND_ROUTES[path] ?? [])],
      });
    }
    for (const c of cmd.commands) walk(c, path ? `${path} ${c.name()}` : c.name());
  };
  for (const c of program.commands) walk(c, c.name());
  return rows;
}

/** docs/cli.md: the commands beside the routes they call. */
export function cliDoc(rows: CommandRow[]): string {
  const cell = (t: string) => t.replace(/\|/g, '\\|');
  const lines = [
    '# iommuctl commands and the API routes they call',
    '',
    'Generated from the command tree and its route table (`src/cli/ctl-api.ts`) by `npm run cli-doc`; a test fails',
    'when this file is stale or when the daemon serves a route that no command calls. `:sid` is the session of',
    '`--session`; every command takes `--json`. The same table: `iommuctl routes`.',
    '',
    '| command | method | route | what it does |',
    '|---|---|---|---|',
  ];
  for (const r of rows) {
    const args = r.arguments.map((a) => (a.required ? `<${a.name}>` : `[${a.name}]`)).join(' ');
    const name = `\`iommuctl ${r.command}${args ? ' ' + args : ''}\``;
    if (r.routes.length === 0) lines.push(`| ${cell(name)} | | (local) | ${cell(r.description)} |`);
    for (const route of r.routes) {
      const [method, path] = route.split(' ');
      lines.push(`| ${cell(name)} | ${method} | \`${path}\` | ${cell(r.description)} |`);
    }
  }
  return lines.join('\n') + '\n';
}

/** The ops of a batch file (- for stdin): a JSON array, or {ops: [...]} as the API's body has it; the API checks each op. */
export function readOpsFile(file: string): unknown[] {
  const j = readJsonFile(file) as { ops?: unknown } | unknown[];
  const ops = Array.isArray(j) ? j : j && typeof j === 'object' ? j.ops : undefined;
  return Array.isArray(ops) ? ops : usage(`${file}: expected an array of ops`);
}

export function registerApiCommands(program: Command, c: CtlContext): void {
  const { out, num } = c;
  const n = (v: string) => Number(num(v));

  program
    .command('routes')
    .description('every command beside the API routes it calls (docs/cli.md is this table)')
    .option('--markdown', 'the table as docs/cli.md has it')
    .action((o: { markdown?: boolean }) => {
      const rows = commandRows(program);
      if (o.markdown) return void process.stdout.write(cliDoc(rows));
      out(rows, () => rows.map((r) => `${r.command.padEnd(24)} ${r.routes.join(', ') || '(local)'}`).join('\n'));
    });

  // ---- daemon ----
  program
    .command('health')
    .description('liveness: status, node, sessions, uptime (GET /health; no token)')
    .action(async () => {
      const h = await c.client().health();
      out(h, `${h.status}: node ${h.node}, ${h.sessions} sessions, up ${h.uptime} s`);
    });
  program
    .command('metrics')
    .description('the Prometheus metrics; --json: one {name, labels, value} per sample (GET /metrics; no token)')
    .action(async () => {
      const text = await c.client().metrics();
      if (!c.json()) return void process.stdout.write(text);
      out(promSamples(text), '');
    });
  program
    .command('version')
    .description('the daemon version, API level, node id and capabilities (GET /v1/version; no token)')
    .action(async () => {
      const v = await c.client().version();
      out(v, `${v.name} ${v.version} (api ${v.api}, node ${v.node}) capabilities: ${v.capabilities.join(', ')}`);
    });
  program
    .command('profiles')
    .description('the simulated SoCs a session can be created from (GET /v1/profiles; no token)')
    .action(async () => {
      const ps = await c.client().profiles();
      out(ps, () => ps.map((p) => `${p.name}: ${p.description} (${p.smmus.length} IOMMUs, ${p.smmus.reduce((a, s) => a + s.contexts.length, 0)} contexts)`).join('\n'));
    });

  // ---- hardware ----
  program
    .command('smmus')
    .description('every IOMMU of the session with its contexts and TLB counters (observer)')
    .action(async () => {
      const ss = await c.session().smmus();
      out(ss, () =>
        ss
          .map((s) => [`${s.name} @${s.base}: ${s.banks} banks, TLB ${s.tlb.entries} entries (${s.tlb.hits} hits, ${s.tlb.misses} misses)`, ...s.contexts.map((x) => `  [${x.index}] ${x.name ?? '-'}${x.domain ? ` -> ${x.domain}` : ''} FSR ${x.registers.FSR ?? '0x0'}`)].join('\n'))
          .join('\n'),
      );
    });

  const ctx = program.command('context').description('a context bank: registers, fault settings');
  ctx
    .command('show')
    .description('the context bank: device, MIDs, domain, decoded registers, stalls (observer)')
    .argument('<smmu>', 'SMMU name (see `smmus`)')
    .argument('<ctx>', 'context bank index or device name')
    .action(async (smmu: string, x: string) => {
      const v = await c.session().context(smmu, x);
      out(v, () =>
        [
          `${smmu}/${v.index} ${v.name ?? '(unnamed)'} device ${v.device ?? '-'} MIDs [${v.mids.join(', ')}] ${v.enabled ? 'enabled' : 'bypass'}, domain ${v.domain ?? '-'}`,
          `fault mode ${v.faultMode}, interrupt ${v.faultInterrupt ? 'on' : 'off'}; ${v.stalls.length} stalled`,
          ...Object.entries(v.registers).map(([k, val]) => `  ${k.padEnd(12)} ${val}`),
          ...v.stalls.map((s) => `  stall ${s.stall}: ${s.access} ${s.iova}`),
        ].join('\n'),
      );
    });
  ctx
    .command('config')
    .description('set the fault settings attach programs into ACTLR (operator)')
    .argument('<smmu>', 'SMMU name')
    .argument('<ctx>', 'context bank index or device name')
    .addOption(new Option('--fault-mode <mode>', 'terminate or stall (ACTLR.CFCFG)').choices(['terminate', 'stall']))
    .addOption(new Option('--fault-interrupt <on|off>', 'raise fault interrupts (ACTLR.CFEIE)').choices(['on', 'off']))
    .action(async (smmu: string, x: string, o: { faultMode?: 'terminate' | 'stall'; faultInterrupt?: 'on' | 'off' }) => {
      if (!o.faultMode && !o.faultInterrupt) usage('give --fault-mode and/or --fault-interrupt');
      const v = await c.session().configureContext(smmu, x, { ...(o.faultMode ? { faultMode: o.faultMode } : {}), ...(o.faultInterrupt ? { faultInterrupt: o.faultInterrupt === 'on' } : {}) });
      out(v, `${smmu}/${v.index}: fault mode ${(v.settings ?? v).faultMode}, interrupt ${(v.settings ?? v).faultInterrupt ? "on" : "off"}`);
    });

  const fault = program.command('fault').description('fault registers: clear, inject');
  fault
    .command('clear')
    .description('write FSR (write-1-to-clear; default: its current value) (operator)')
    .argument('<smmu>', 'SMMU name')
    .argument('<ctx>', 'context bank index or device name')
    .option('--value <fsr>', 'the value to write, e.g. 0x4000000f as msm_iommu does')
    .action(async (smmu: string, x: string, o: { value?: string }) => {
      const v = await c.session().clearFault(smmu, x, o.value !== undefined ? num(o.value) : undefined);
      out(v, `${smmu}/${v.index}: FSR ${v.registers.FSR}`);
    });
  fault
    .command('inject')
    .description('raise a fault on the context as the hardware would (operator; msm only)')
    .argument('<smmu>', 'SMMU name')
    .argument('<ctx>', 'context bank index or device name')
    .addArgument(new Command().createArgument('<kind>', 'external, multi-hit or tlb-miss').choices(['external', 'multi-hit', 'tlb-miss']))
    .action(async (smmu: string, x: string, kind: 'external') => {
      const v = await c.session().injectFault(smmu, x, kind);
      out(v, `${smmu}/${v.index}: FSR ${v.registers.FSR} FAR ${v.registers.FAR}`);
    });

  program
    .command('resume')
    .description('resolve a stalled transaction: retry re-walks the table, terminate aborts it (operator)')
    .argument('<smmu>', 'SMMU name')
    .argument('<ctx>', 'context bank index or device name')
    .argument('<stall>', 'stall id (from `context show` or a stall event)')
    .addArgument(new Command().createArgument('<action>', 'retry or terminate').choices(['retry', 'terminate']))
    .action(async (smmu: string, x: string, stall: string, action: 'retry' | 'terminate') => {
      const r = await c.session().resume(smmu, x, stall, action);
      out(r, () => accessLine(r));
    });

  const mmio = program.command('mmio').description("the IOMMU's register window, as a driver's readl/writel");
  mmio
    .command('read')
    .description('readl of one register (observer; side-effect free reads)')
    .argument('<smmu>', 'SMMU name')
    .argument('<offset>', 'byte offset in the window, e.g. 0x8020 (bank 0 FSR)')
    .action(async (smmu: string, off: string) => {
      const r = await c.session().mmioRead(smmu, num(off));
      out(r, `${r.offset} ${r.register} = ${r.value}`);
    });
  mmio
    .command('write')
    .description('writel with the register side effects (operator)')
    .argument('<smmu>', 'SMMU name')
    .argument('<offset>', 'byte offset in the window')
    .argument('<value>', '32-bit value')
    .action(async (smmu: string, off: string, value: string) => {
      const r = await c.session().mmioWrite(smmu, num(off), num(value));
      out(r, `${r.offset} ${r.register} <- ${num(value)} (reads ${r.value})`);
    });
  mmio
    .command('batch')
    .description('a sequence of reads and writes, all or nothing (operator)')
    .argument('<smmu>', 'SMMU name')
    .argument('<file>', 'JSON [{op: "read"|"write", offset, value?}] or {ops: [...]}; - for stdin')
    .action(async (smmu: string, file: string) => {
      const r = await c.session().mmioBatch(smmu, readOpsFile(file) as Parameters<SessionClient['mmioBatch']>[1]);
      out(r, () => r.results.map((x) => `${x.offset} ${x.register} = ${x.value}`).join('\n'));
    });

  program
    .command('master-access')
    .description('one transaction from a bus master ID, routed by M2VCBR (operator; msm only)')
    .argument('<smmu>', 'SMMU name')
    .argument('<mid>', 'master ID')
    .argument('<iova>', 'address the master emits')
    .addOption(new Option('--as <kind>', 'read, write or exec').choices(['read', 'write', 'exec']).default('read'))
    .action(async (smmu: string, mid: string, iova: string, o: { as: 'read' }) => {
      const r = await c.session().masterAccess(smmu, n(mid), { iova: num(iova), access: o.as });
      out(r, () => accessLine(r));
    });

  program
    .command('access-batch')
    .description('many transactions of one device in order (operator)')
    .argument('<device>', 'device (context bank name)')
    .argument('<iova...>', 'addresses')
    .addOption(new Option('--as <kind>', 'read, write or exec').choices(['read', 'write', 'exec']).default('read'))
    .action(async (device: string, iovas: string[], o: { as: 'read' }) => {
      const r = await c.session().accessBatch(device, { access: o.as, iovas: iovas.map(num) });
      out(r, () => r.results.map((x, i) => `${num(iovas[i]!)}: ${accessLine(x)}`).join('\n'));
    });

  // ---- IOMMU API reads ----
  program
    .command('mappings')
    .description('mapped extents of a domain in iova order; follows every page unless --limit (observer)')
    .argument('<domain>', 'domain id')
    .option('--from <iova>', 'start address')
    .option('--to <iova>', 'end address (exclusive)')
    .option('--limit <n>', 'one page of at most n extents; --json then carries `next`')
    .action(async (did: string, o: { from?: string; to?: string; limit?: string }) => {
      const q = { ...(o.from ? { from: num(o.from) } : {}), ...(o.to ? { to: num(o.to) } : {}) };
      let items: Array<{ iova: string; paddr: string; size: number; pageSize: number; prot: string[] }>;
      let next: { from: string; limit: number } | null = null;
      if (o.limit) ({ items, next } = await c.session().mappingsPage(did, { ...q, limit: n(o.limit) }));
      else {
        items = [];
        for await (const m of c.session().allMappings(did, q)) items.push(m);
      }
      out({ items, next }, () => [...items.map((m) => `${m.iova} -> ${m.paddr} +${m.size.toString(16)} (${m.pageSize / 1024}K pages) ${m.prot.join(',')}`), ...(next ? [`-- more: --from ${next.from}`] : [])].join('\n') || '(nothing mapped)');
    });
  program
    .command('iova-to-phys')
    .description('iommu_iova_to_phys: walk the domain page table (observer)')
    .argument('<domain>', 'domain id')
    .argument('<iova>', 'address')
    .action(async (did: string, iova: string) => {
      const r = await c.session().iovaToPhys(did, num(iova));
      out(r, `${r.iova} -> ${r.paddr} (${r.pageSize / 1024}K page, ${r.prot.join(',')})`);
    });

  // ---- DMA API ----
  const dma = program.command('dma').description("the DMA API on a device's default DMA domain");
  const dmaLine = (st: Awaited<ReturnType<SessionClient['dmaState']>>) =>
    [
      `${st.device}: ${st.mode} mode, domain ${st.domain ?? '-'}, limit ${st.dmaLimit}, ${st.mappings.length} mappings`,
      ...st.mappings.map((m) => `  ${m.dmaAddr} +${m.size} ${m.dir}${m.owner ? ` owned by ${m.owner}` : ''}${m.bounce ? ` bounced via ${m.bounce.paddr} (${m.bounce.slots} slots)` : ''}`),
    ].join('\n');
  dma
    .command('show')
    .description('the device DMA state: mode, domain, mask, live mappings with owner and bounce slots (observer)')
    .argument('<device>', 'device')
    .action(async (device: string) => {
      const st = await c.session().dmaState(device);
      out(st, () => dmaLine(st));
    });
  dma
    .command('config')
    .description('--direct: DMA addresses are physical (swiotlb bounce buffers past the mask); --iommu: through the IOMMU; flush policy and mask (operator)')
    .argument('<device>', 'device')
    .option('--direct', 'direct mode (no IOMMU; bounce buffers)')
    .option('--iommu', 'IOMMU mode (the default DMA domain)')
    .option('--limit <mask>', 'DMA mask / highest IOVA (inclusive)')
    .addOption(new Option('--flush <policy>', 'strict or deferred (flush queue)').choices(['strict', 'deferred']))
    .action(async (device: string, o: { direct?: boolean; iommu?: boolean; limit?: string; flush?: 'strict' | 'deferred' }) => {
      if (o.direct && o.iommu) usage('--direct or --iommu, not both');
      const st = await c.session().dmaConfigure(device, {
        ...(o.direct ? { mode: 'direct' as const } : o.iommu ? { mode: 'iommu' as const } : {}),
        ...(o.limit ? { dmaLimit: num(o.limit) } : {}),
        ...(o.flush ? { flushPolicy: o.flush } : {}),
      });
      out(st, () => dmaLine(st));
    });
  const dirOption = () => new Option('--dir <dir>', 'DMA direction').choices(DIRS).default('bidirectional');
  dma
    .command('map')
    .description('dma_map_single: an IOVA for a physical buffer (operator)')
    .argument('<device>', 'device')
    .argument('<paddr>', 'physical address')
    .argument('<size>', 'bytes')
    .addOption(dirOption())
    .action(async (device: string, paddr: string, size: string, o: { dir: Dir }) => {
      const r = await c.session().dmaMap(device, { paddr: num(paddr), size: num(size), dir: o.dir });
      out(r, `dma ${r.dmaAddr} +${r.size}`);
    });
  dma
    .command('map-sg')
    .description('dma_map_sg: segments into one contiguous IOVA range (operator)')
    .argument('<device>', 'device')
    .argument('<segment...>', 'segments as paddr:size (e.g. 0x40000000:0x1000)')
    .addOption(dirOption())
    .action(async (device: string, segs: string[], o: { dir: Dir }) => {
      const segments = segs.map((s) => {
        const [p, sz] = s.split(':');
        if (!p || !sz) usage(`segment ${s} is not paddr:size`);
        return { paddr: num(p!), size: num(sz!) };
      });
      const r = await c.session().dmaMapSg(device, { segments, dir: o.dir });
      out(r, () => [`dma ${r.dmaAddr}`, ...r.segments.map((s) => `  ${s.dmaAddr} +${s.size.toString(16)}`)].join('\n'));
    });
  dma
    .command('unmap')
    .description('dma_unmap_single/sg with the DMA-debug checks (operator)')
    .argument('<device>', 'device')
    .argument('<dmaAddr>', 'DMA address the map returned')
    .argument('<size>', 'bytes')
    .addOption(dirOption())
    .action(async (device: string, addr: string, size: string, o: { dir: Dir }) => {
      await c.session().dmaUnmap(device, { dmaAddr: num(addr), size: num(size), dir: o.dir });
      out({ unmapped: num(addr) }, `unmapped ${num(addr)}`);
    });
  dma
    .command('sync')
    .description('dma_sync_single_for_cpu / _for_device, whole or partial (operator)')
    .argument('<device>', 'device')
    .argument('<dmaAddr>', 'a DMA address inside a live mapping')
    .argument('<size>', 'bytes')
    .addOption(new Option('--for <owner>', 'cpu or device').choices(['cpu', 'device']).makeOptionMandatory())
    .option('--offset <bytes>', 'offset from dmaAddr')
    .addOption(new Option('--dir <dir>', 'checked against the mapping (direction-mismatch)').choices(DIRS))
    .action(async (device: string, addr: string, size: string, o: { for: 'cpu' | 'device'; offset?: string; dir?: Dir }) => {
      await c.session().dmaSync(device, { dmaAddr: num(addr), size: num(size), for: o.for, ...(o.offset ? { offset: num(o.offset) } : {}), ...(o.dir ? { dir: o.dir } : {}) });
      out({ synced: num(addr), for: o.for }, `synced ${num(addr)} for ${o.for}`);
    });

  // ---- buffers and memory ----
  const buf = program.command('buffer').description('physical buffers from the pools');
  buf
    .command('alloc')
    .description('allocate a zeroed physical buffer (operator)')
    .argument('<size>', 'bytes')
    .option('--pools <list>', 'comma list of pools to try, in order')
    .option('--align <bytes>', 'alignment')
    .action(async (size: string, o: { pools?: string; align?: string }) => {
      const b = await c.session().allocBuffer({ size: num(size), ...(o.pools ? { pools: o.pools.split(',') } : {}), ...(o.align ? { align: n(o.align) } : {}) });
      out(b, `${b.paddr} +${b.size.toString(16)} (${b.pool})`);
    });
  buf
    .command('free')
    .description('free a buffer (operator)')
    .argument('<paddr>', 'its physical address')
    .action(async (paddr: string) => {
      await c.session().freeBuffer(num(paddr));
      out({ freed: num(paddr) }, `freed ${num(paddr)}`);
    });
  buf
    .command('list')
    .description('allocated buffers in address order; every page unless --limit (observer)')
    .option('--limit <n>', 'one page of at most n buffers; --json then carries `next`')
    .option('--from <paddr>', 'start address')
    .action(async (o: { limit?: string; from?: string }) => {
      const q = o.from ? { from: num(o.from) } : {};
      let items: Array<{ paddr: string; size: number; pool: string }> = [];
      let next: { from: string; limit: number } | null = null;
      if (o.limit) ({ items, next } = await c.session().buffersPage({ ...q, limit: n(o.limit) }));
      else for (let p = await c.session().buffersPage(q); ; p = await c.session().buffersPage(p.next!)) {
        items.push(...p.items);
        if (!p.next) break;
      }
      out({ items, next }, () => [...items.map((b) => `${b.paddr} +${b.size.toString(16)} ${b.pool}`), ...(next ? [`-- more: --from ${next.from}`] : [])].join('\n') || '(no buffers)');
    });
  program
    .command('pools')
    .description('physical pools: usage and largest free range (observer)')
    .action(async () => {
      const ps = await c.session().pools();
      out(ps, () => ps.map((p) => `${p.name} @${p.base} ${p.used}/${p.size} used, largest free ${p.largestFree}, priority ${p.priority}`).join('\n'));
    });

  const mem = program.command('memory').description('physical memory (CPU side)');
  mem
    .command('read')
    .description('read bytes: a hex dump, or raw bytes with --out (observer)')
    .argument('<paddr>', 'physical address')
    .argument('<size>', 'bytes')
    .option('--out <file>', 'write the raw bytes to a file')
    .action(async (paddr: string, size: string, o: { out?: string }) => {
      const bytes = await c.session().readMemory(num(paddr), n(size));
      if (o.out) {
        writeFileSync(o.out, bytes);
        return out({ file: o.out, bytes: bytes.length }, `wrote ${bytes.length} bytes to ${o.out}`);
      }
      out({ paddr: num(paddr), data: Buffer.from(bytes).toString('hex') }, hexdump(n(paddr), bytes));
    });
  mem
    .command('write')
    .description('write bytes from --hex or --file (operator)')
    .argument('<paddr>', 'physical address')
    .option('--hex <bytes>', 'hex bytes, e.g. deadbeef')
    .option('--file <file>', 'raw bytes from a file')
    .action(async (paddr: string, o: { hex?: string; file?: string }) => {
      if (!!o.hex === !!o.file) usage('give exactly one of --hex and --file');
      let data: Uint8Array;
      if (o.hex) {
        if (!/^([0-9a-fA-F]{2})+$/.test(o.hex)) usage(`--hex ${o.hex} is not whole bytes of hex`);
        data = Buffer.from(o.hex, 'hex');
      } else {
        try {
          data = readFileSync(o.file!);
        } catch (e) {
          return usage(`cannot read ${o.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        }
      }
      await c.session().writeMemory(num(paddr), data);
      out({ paddr: num(paddr), bytes: data.length }, `wrote ${data.length} bytes at ${num(paddr)}`);
    });
}

type Desc = { index: number; desc: string };
/** GET .../pagetable as the API gives it: two levels (msm, omap) or the GART's flat entry table. */
export type PagetableView =
  | { family?: string; ttbr0: string; l1: Desc[]; l2: Array<{ base: string; entries: Desc[] }> }
  | { family: 'gart'; aperture: { base: string; size: number }; entries: Array<{ iova: string; pte: string }> };

/** One decoded OMAP descriptor: a leaf (page size, output address) or a table pointer. */
type OmapLeaf = { kind: 'supersection' | 'section' | 'large' | 'small'; size: number; pa: number; replicated: boolean } | { kind: 'table'; l2: number } | { kind: 'invalid' };

/** omap-iopgtable.h's type tests: the same ones the walker applies. */
function omapL1(d: number): OmapLeaf {
  if ((d & 0x40003) === IOPGD_SUPER) return { kind: 'supersection', size: 0x1000000, pa: (d & 0xff000000) >>> 0, replicated: true };
  if ((d & 0x40003) === IOPGD_SECTION) return { kind: 'section', size: 0x100000, pa: (d & 0xfff00000) >>> 0, replicated: false };
  if ((d & 3) === IOPGD_TABLE) return { kind: 'table', l2: (d & 0xfffffc00) >>> 0 };
  return { kind: 'invalid' };
}
function omapL2(d: number): OmapLeaf {
  if ((d & 3) === IOPTE_LARGE) return { kind: 'large', size: 0x10000, pa: (d & 0xffff0000) >>> 0, replicated: true };
  if ((d & 2) === IOPTE_SMALL) return { kind: 'small', size: 0x1000, pa: (d & 0xfffff000) >>> 0, replicated: false };
  return { kind: 'invalid' };
}
const SIZE_NAMES: Record<number, string> = { 0x1000: '4K', 0x10000: '64K', 0x100000: '1M', 0x1000000: '16M' };

/**
 * A level's entries with the replicas of a large entry folded into one line: a 64K large page fills 16 L2 words,
 * a 16M supersection 16 L1 words, each the same descriptor, in one 16-aligned block.
 */
function omapLevel(entries: Desc[], decode: (d: number) => OmapLeaf, iovaOf: (index: number) => number, label: string, indent: string, tables: (l2: number, index: number) => string[]): string[] {
  const lines: string[] = [];
  for (let i = 0; i < entries.length; ) {
    const e = entries[i]!;
    const d = Number(e.desc);
    const x = decode(d);
    let n = 1;
    if ('replicated' in x && x.replicated) {
      while (n < 16 && i + n < entries.length && entries[i + n]!.index === e.index + n && entries[i + n]!.desc === e.desc && (e.index + n) >> 4 === e.index >> 4) n++;
    }
    const at = n > 1 ? `${label}[${e.index}..${e.index + n - 1}] ${e.desc} ×${n}` : `${label}[${e.index}] ${e.desc}`;
    if (x.kind === 'table') lines.push(`${indent}${at} table: L2 @${hex(x.l2)}`, ...tables(x.l2, e.index));
    else if (x.kind === 'invalid') lines.push(`${indent}${at} invalid`);
    else lines.push(`${indent}${at} ${x.kind} ${SIZE_NAMES[x.size]}: ${hex(iovaOf(e.index))} -> ${hex(x.pa)}`);
    i += n;
  }
  return lines;
}

/** The page table in its family's own shape (what `domain pagetable` prints). */
export function pagetableLines(t: PagetableView): string[] {
  if ('entries' in t) {
    const base = Number(t.aperture.base);
    const valid = t.entries.filter((e) => Number(e.pte) & GART_ENTRY_VALID).length;
    return [
      `GART aperture ${t.aperture.base} +${hex(t.aperture.size)}: ${t.aperture.size / 0x1000} entries, ${valid} valid`,
      ...t.entries.map((e) => `  [${(Number(e.iova) - base) / 0x1000}] ${e.iova} -> ${Number(e.pte) & GART_ENTRY_VALID ? hex((Number(e.pte) & GART_PAGE_MASK) >>> 0) : 'invalid'} (pte ${e.pte})`),
    ];
  }
  if (t.family === 'omap') {
    const l2 = new Map(t.l2.map((x) => [Number(x.base), x.entries]));
    const shown = new Set<number>();
    const lines = [
      `TTB ${t.ttbr0}`,
      ...omapLevel(t.l1, omapL1, (i) => i * 0x100000, 'L1', '', (base, i) => {
        shown.add(base);
        return omapLevel(l2.get(base) ?? [], omapL2, (j) => i * 0x100000 + j * 0x1000, 'L2', '  ', () => []);
      }),
    ];
    // A second-level table no first-level word points at (the API lists every table the domain owns).
    for (const x of t.l2) if (!shown.has(Number(x.base))) lines.push(`L2 @${x.base} (not referenced)`, ...x.entries.map((e) => `  L2[${e.index}] ${e.desc}`));
    return lines;
  }
  return [`TTBR0 ${t.ttbr0}`, ...t.l1.map((e) => `L1[${e.index}] ${e.desc}`), ...t.l2.flatMap((x) => [`L2 @${x.base}`, ...x.entries.map((e) => `  [${e.index}] ${e.desc}`)])];
}

/** One transaction's outcome on one line (access, master-access, resume, access-batch items). */
export function accessLine(r: { outcome: string; paddr?: string; tlb?: string; stale?: boolean; stall?: string; fault?: FaultFields }): string {
  if (r.outcome === 'ok') return `ok ${r.paddr} (TLB ${r.tlb}${r.stale ? ', STALE' : ''})`;
  if (r.outcome === 'terminated') return 'terminated';
  if (r.outcome === 'stalled') return `stalled (stall ${r.stall}): ${faultLine(r.fault!)}`;
  return `fault: ${faultLine(r.fault!)}`;
}
