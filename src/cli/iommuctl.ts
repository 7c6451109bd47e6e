#!/usr/bin/env node
/**
 * iommuctl: drive an iommud daemon from a terminal or a script. Every command prints a human line, or with
 * --json one JSON document. Exit codes: 0 ok, 2 usage, 3 the daemon refused (API error), 4 connection error.
 * Configuration: --url / IOMMUD_URL, --token / IOMMUD_TOKEN, --session / IOMMUD_SESSION, then the current context of
 * ~/.config/iommud/config.json (--context / IOMMUD_CONTEXT picks another), then http://127.0.0.1:8080.
 */
import { Command, CommanderError, Option } from 'commander';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { IommudClient, IommudConnectionError, IommudError, type EventType, type SessionClient } from '../client/index.js';
import { VERSION } from '../server/version.js';
import { accessLine, pagetableLines, readOpsFile, registerApiCommands, type PagetableView } from './ctl-api.js';
import { configPath, loadConfig, registerConfigCommands } from './ctl-config.js';

export const EXIT_USAGE = 2;
export const EXIT_API = 3;
export const EXIT_CONNECTION = 4;

interface Globals {
  url: string;
  token?: string;
  session?: string;
  json: boolean;
}

const program = new Command('iommuctl')
  .description('drive an iommud daemon: sessions, domains, hardware, DMA, memory, events, traces, HIL load.\nRoles: observer reads, operator also mutates and accesses devices, owner also mints tokens and deletes.')
  .version(VERSION, '-V, --version', 'the iommuctl version')
  .addOption(new Option('--url <url>', 'daemon URL (default http://127.0.0.1:8080)').env('IOMMUD_URL'))
  .addOption(new Option('--token <token>', 'session token').env('IOMMUD_TOKEN'))
  .addOption(new Option('--session <id>', 'session id').env('IOMMUD_SESSION'))
  .addOption(new Option('--context <name>', 'a saved context of the config file').env('IOMMUD_CONTEXT'))
  .option('--json', 'print JSON for scripts', false)
  .showHelpAfterError()
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

/** Flags and environment first, then the chosen (or current) context of the config file, then the default URL. */
const globals = (): Globals => {
  const o = program.opts<Globals & { context?: string }>();
  const cfg = loadConfig();
  const name = o.context ?? cfg.current;
  const saved = name ? cfg.contexts[name] : undefined;
  if (o.context && !saved) throw new CommanderError(EXIT_USAGE, 'iommuctl.usage', `no context ${o.context} in ${configPath()}`);
    // An empty variable counts as unset (IOMMUD_URL= in a script), as it does for most CLIs.
  return { json: o.json, url: o.url || saved?.url || 'http://127.0.0.1:8080', token: o.token || saved?.token, session: o.session || saved?.session };
};
const client = () => new IommudClient({ url: globals().url, token: globals().token });

function session(): SessionClient {
  const g = globals();
  if (!g.session || !g.token) throw new CommanderError(EXIT_USAGE, 'iommuctl.usage', 'this command needs --session and --token (or IOMMUD_SESSION, IOMMUD_TOKEN, or a context: iommuctl config set-context)');
  return client().session(g.session, g.token);
}

/** Prints `data` as JSON with --json, else the human line. */
function out(data: unknown, human: string | (() => string)): void {
  process.stdout.write((globals().json ? JSON.stringify(data, null, 2) : typeof human === 'string' ? human : human()) + '\n');
}

const num = (v: string): string => {
  if (!/^(0[xX][0-9a-fA-F]+|[0-9]+)$/.test(v)) throw new CommanderError(EXIT_USAGE, 'iommuctl.usage', `not an address or size: ${v}`);
  return /^0[xX]/.test(v) ? v.toLowerCase() : '0x' + Number(v).toString(16);
};

const DOMAIN_ARG = 'domain id (see `domain show`)';
const DEVICE_ARG = 'device: a context name (see `smmus`)';
/** The cache maintenance operations, as the kernel's names for them. */
const CACHE_OPS = { clean: 'clean (write back dirty lines)', invalidate: 'invalidate (drop lines, dirty data lost)', flush: 'flush (clean and invalidate)' } as const;

// ---- session ----
const sess = program.command('session').description('create, show, delete sessions; mint tokens');
sess
  .command('create')
  .description('create a session (no token needed); prints its id and owner token')
  .option('--profile <name>', 'a profile name (see `profiles`)', 'msm8x60')
  .option('--name <name>', 'session name')
  .option('--cpu-cache', 'model the CPU data cache (non-coherent DMA)')
  .option('--line-size <n>', 'cache line size: 32 or 64')
  .option('--lines <n>', 'cache lines (1 .. 65536)')
  .option('--coherent <devices>', 'comma list of devices that snoop the cache')
  .option('--bounce <paddr:size>', 'a swiotlb bounce pool')
  .action(async (o: { profile: string; name?: string; cpuCache?: boolean; lineSize?: string; lines?: string; coherent?: string; bounce?: string }) => {
    const cache = o.cpuCache || o.lineSize || o.lines || o.coherent;
    const [bp, bs] = (o.bounce ?? '').split(':');
    if (o.bounce && (!bp || !bs)) throw new CommanderError(EXIT_USAGE, 'iommuctl.usage', '--bounce takes paddr:size');
    const s = await client().createSession({
      profile: o.profile,
      ...(o.name ? { name: o.name } : {}),
      ...(cache
        ? { cpuCache: { ...(o.lineSize ? { lineSize: Number(o.lineSize) } : {}), ...(o.lines ? { lines: Number(o.lines) } : {}), ...(o.coherent ? { coherent: o.coherent.split(',') } : {}) } }
        : {}),
      ...(o.bounce ? { bounce: { paddr: num(bp!), size: num(bs!) } } : {}),
    });
    out(s.created, `session ${s.created.id}\ntoken ${s.created.token}`);
  });
sess.command('show').description('the session: profile, revision, domains, subscribers (observer)').action(async () => {
  const s = await session().get();
  out(s, `${s.id} ${s.name} (${s.profile}) revision ${s.revision}, ${s.domains} domains, ${s.subscribers} subscribers`);
});
sess.command('delete').description('delete the session (owner)').action(async () => {
  await session().delete();
  out({ deleted: globals().session }, `deleted ${globals().session}`);
});
sess
  .command('token')
  .description('mint a token: observer, operator or owner (owner)')
  .argument('<role>', 'observer (reads), operator (also mutates and accesses devices) or owner (also mints tokens, deletes)')
  .option('--label <label>', 'names the user in events')
  .action(async (role: string, o: { label?: string }) => {
    if (!['observer', 'operator', 'owner'].includes(role)) throw new CommanderError(EXIT_USAGE, 'iommuctl.usage', `role is observer, operator or owner`);
    const t = await session().mintToken(role as 'observer', o.label);
    out(t, t.token);
  });

// ---- domain ----
const dom = program.command('domain').description('the IOMMU API: alloc, attach, map, unmap, flush, sync, show, pagetable');
dom
  .command('alloc')
  .description("iommu_domain_alloc: a page table in the format of the device's IOMMU family (operator)")
  .option('--for <device>', 'the device the domain is for: its family (msm, omap, gart) sets format and rules')
  .option('--deferred', 'deferred invalidation (iotlb_sync on sync)')
  .option('--refuse-partial', 'refuse unmaps that cut a large page')
  .option('--pgsizes <list>', 'comma list of 4096,65536,1048576,16777216')
  .option('--label <label>', 'a name for the domain in views and events')
  .action(async (o: { for?: string; deferred?: boolean; refusePartial?: boolean; pgsizes?: string; label?: string }) => {
    const d = await session().allocDomain({
      ...(o.for ? { for: o.for } : {}),
      ...(o.deferred ? { flushPolicy: 'deferred' as const } : {}),
      ...(o.refusePartial ? { partialUnmap: 'refuse' as const } : {}),
      ...(o.pgsizes ? { pgsizes: o.pgsizes.split(',').map(Number) as Array<4096> } : {}),
      ...(o.label ? { label: o.label } : {}),
    });
    out(d, `${d.id} ttbr0 ${d.ttbr0}`);
  });
dom
  .command('attach')
  .description('iommu_attach_device: program the context bank (operator)')
  .argument('<domain>', DOMAIN_ARG)
  .argument('<device>', DEVICE_ARG)
  .option('--replace', 'switch from another domain on the fly')
  .action(async (did: string, device: string, o: { replace?: boolean }) => {
    const d = await session().attach(did, device, o.replace);
    out(d, `${device} attached to ${did}`);
  });
dom.command('detach').description('iommu_detach_device (operator)').argument('<domain>', DOMAIN_ARG).argument('<device>', DEVICE_ARG).action(async (did: string, device: string) => {
  const d = await session().detach(did, device);
  out(d, `${device} detached from ${did}`);
});
dom
  .command('map')
  .description('iommu_map with the largest page sizes alignment allows (operator)')
  .argument('<domain>', DOMAIN_ARG)
  .argument('<iova>', 'first I/O virtual address (hex or decimal)')
  .argument('<paddr>', 'first physical address')
  .argument('<size>', 'bytes')
  .option('--prot <list>', 'comma list of read,write,noexec,cache,mmio,priv', 'read,write')
  .action(async (did: string, iova: string, paddr: string, size: string, o: { prot: string }) => {
    const r = await session().map(did, { iova: num(iova), paddr: num(paddr), size: num(size), prot: o.prot.split(',') as Array<'read'> });
    out(r, `mapped ${r.iova} +${r.size}: ${Object.entries(r.pages).filter(([, n]) => n).map(([k, n]) => `${n}×${k}`).join(' ')}`);
  });
dom.command('unmap').description('iommu_unmap (operator)').argument('<domain>', DOMAIN_ARG).argument('<iova>', 'first I/O virtual address').argument('<size>', 'bytes').action(async (did: string, iova: string, size: string) => {
  const r = await session().unmap(did, { iova: num(iova), size: num(size) });
  out(r, `unmapped ${r.unmapped} bytes`);
});
dom
  .command('batch')
  .description('iommu_map / iommu_unmap in one all-or-nothing batch (operator)')
  .argument('<domain>', DOMAIN_ARG)
  .argument('<file>', 'JSON [{op: "map", iova, paddr, size, prot} | {op: "unmap", iova, size}] or {ops: [...]}; - for stdin')
  .action(async (did: string, file: string) => {
    const r = await session().batch(did, readOpsFile(file) as Parameters<SessionClient['batch']>[1]);
    out(r, () => r.results.map((x) => (x.op === 'map' ? `map ${x.iova} +${x.size.toString(16)}` : `unmap ${x.unmapped} bytes`)).join('\n'));
  });
dom.command('flush').description('iommu_flush_iotlb_all on the attached contexts (operator)').argument('<domain>', DOMAIN_ARG).action(async (did: string) => {
  const r = await session().flush(did);
  out(r, `flushed ${r.contexts} contexts, ${r.invalidated} TLB entries`);
});
dom.command('sync').description('iommu_iotlb_sync: apply the deferred invalidations (operator)').argument('<domain>', DOMAIN_ARG).action(async (did: string) => {
  const r = await session().sync(did);
  out(r, `synced: ${r.invalidated} TLB entries invalidated`);
});
dom.command('show').description('one domain, or all (observer)').argument('[domain]', 'domain id; all domains without it').action(async (did?: string) => {
  const s = session();
  const ds = did ? [await s.domain(did)] : await s.domains();
  out(did ? ds[0] : ds, () => ds.map((d) => `${d.id} ${d.type} ttbr0 ${d.ttbr0} attached [${d.attached.join(', ')}] ${d.mappedBytes} bytes mapped`).join('\n'));
});
dom.command('free').description('iommu_domain_free (operator)').argument('<domain>', DOMAIN_ARG).action(async (did: string) => {
  await session().freeDomain(did);
  out({ freed: did }, `freed ${did}`);
});
dom
  .command('pagetable')
  .description("the domain's page table in its family's shape: msm L1/L2 descriptors, omap levels with large entries' replicas folded, the GART's valid entries (observer)")
  .argument('<domain>', DOMAIN_ARG)
  .action(async (did: string) => {
    const t = (await session().pagetable(did)) as PagetableView;
    out(t, () => pagetableLines(t).join('\n'));
  });

// ---- access ----
program
  .command('access')
  .description('one transaction through the device context; a fault prints its registers, FSR bits by name (operator)')
  .argument('<device>', DEVICE_ARG)
  .argument('<iova>', 'the address the device emits')
  .addOption(new Option('--as <kind>', 'read, write or exec').choices(['read', 'write', 'exec']).default('read'))
  .option('--priv', 'privileged access')
  .action(async (device: string, iova: string, o: { as: 'read'; priv?: boolean }) => {
    const r = await session().access(device, { iova: num(iova), access: o.as, ...(o.priv ? { priv: true } : {}) });
    out(r, () => accessLine(r));
  });

// ---- CPU cache ----
const cache = program.command('cache').description('the CPU data cache: show lines, clean, invalidate, flush');
cache
  .command('show')
  .description('the CPU data cache: lines held, dirty ones, in a range or all (observer)')
  .argument('[paddr]', 'first physical address of the range')
  .argument('[size]', 'bytes of the range')
  .action(async (paddr?: string, size?: string) => {
    const c = await session().cache(paddr ? { paddr: num(paddr), ...(size ? { size: Number(num(size)) } : {}) } : {});
    out(c, () => (c.lineSize === 0 ? 'no CPU cache (a coherent session)' : [`${c.used}/${c.lines} lines of ${c.lineSize} bytes`, ...c.entries.map((e) => `  ${e.paddr}${e.dirty ? ' dirty' : ''}`)].join('\n')));
  });
for (const action of ['clean', 'invalidate', 'flush'] as const) {
  cache
    .command(action)
    .description(`${CACHE_OPS[action]} of a physical range (operator)`)
    .argument('<paddr>', 'first physical address')
    .argument('<size>', 'bytes')
    .action(async (paddr: string, size: string) => {
      const s = session();
      const r = await (action === 'clean' ? s.cacheClean(num(paddr), num(size)) : action === 'invalidate' ? s.cacheInvalidate(num(paddr), num(size)) : s.cacheFlush(num(paddr), num(size)));
      out(r, `${action}: ${r.lines} lines`);
    });
}

// ---- watch ----
program
  .command('watch')
  .description('live events until interrupted (observer; a refusal by the daemon is exit 3, an unreachable daemon exit 4)')
  .option('--types <list>', 'comma list of event types')
  .option('--device <name>')
  .option('--since <seq>')
  .option('--count <n>', 'stop after n events')
  .action(async (o: { types?: string; device?: string; since?: string; count?: string }) => {
    const s = session();
    let left = o.count ? Number(o.count) : Infinity;
    const sub = s.subscribe({
      // Names as typed: the daemon refuses an unknown type before the upgrade, with its own message.
      ...(o.types ? { types: o.types.split(',') as EventType[] } : {}),
      ...(o.device ? { device: o.device } : {}),
      ...(o.since !== undefined ? { since: Number(o.since) } : {}),
      onEvent: (ev) => {
        const { seq, time, type, by, ...rest } = ev as Record<string, unknown>;
        process.stdout.write(globals().json ? JSON.stringify(ev) + '\n' : `${seq} ${String(time).slice(11, 23)} ${type} ${by ? `[${(by as { label: string }).label}] ` : ''}${JSON.stringify(rest)}\n`);
        if (--left <= 0) sub.close();
      },
      onGap: (g) => process.stdout.write(globals().json ? JSON.stringify({ type: 'gap', ...g }) + '\n' : `-- gap: events ${g.from}..${g.to} were missed --\n`),
      onReconnect: (r) => process.stderr.write(`iommuctl: connection lost (${r.reason}); reconnecting in ${r.delayMs} ms (attempt ${r.attempt})\n`),
    });
    // A notice once the daemon has accepted the subscription (stderr: stdout stays the events); a refusal rejects
    // ready() and done() alike, and done() reports it.
    sub.ready().then(
      () => process.stderr.write(`iommuctl: watching ${globals().session}${o.types ? ` (${o.types})` : ''}\n`),
      () => {},
    );
    process.once('SIGINT', () => sub.close());
    // Rejects with IommudError (exit 3) or IommudConnectionError (exit 4): the daemon's own message is printed.
    await sub.done();
  });

// ---- trace ----
const trace = program.command('trace').description('export a session as JSON lines, or replay one into a new session');
trace
  .command('export')
  .description('the session as JSON lines (observer)')
  .option('--out <file>', 'write to a file instead of stdout')
  .action(async (o: { out?: string }) => {
    const t = await session().trace();
    if (o.out) {
      writeFileSync(o.out, t);
      out({ file: o.out, lines: t.trim().split('\n').length }, `wrote ${t.trim().split('\n').length} lines to ${o.out}`);
    } else process.stdout.write(t);
  });
trace.command('replay').description('create a new session from an exported trace (no token needed)').argument('<file>', 'a trace written by `trace export`').action(async (file: string) => {
  if (!existsSync(file)) throw new CommanderError(EXIT_USAGE, 'iommuctl.usage', `trace replay: no such file ${file}`);
  const s = await client().createSession({ trace: readFileSync(file, 'utf8') });
  out(s.created, `session ${s.created.id}\ntoken ${s.created.token}`);
});

// ---- bench-rig ----
program
  .command('bench-rig')
  .description('drive the binary stream for N seconds: translation rate and latency percentiles (operator)')
  .argument('<device>', DEVICE_ARG)
  .argument('<iova>', 'first address of the range the device reads (mapped)')
  .option('--seconds <n>', 'duration', '5')
  .option('--batch <n>', 'iovas per request', '4096')
  .option('--in-flight <n>', 'pipelined requests', '8')
  .option('--pattern <p>', 'random: uniform over --span bytes from <iova> (realistic); warm: every iova in one 4 KiB page (best case, all TLB hits)', 'random')
  .option('--span <bytes>', 'bytes the random pattern covers (they must be mapped)', '0x4000000')
  .action(async (device: string, iova: string, o: { seconds: string; batch: string; inFlight: string; pattern: string; span: string }) => {
    if (o.pattern !== 'random' && o.pattern !== 'warm') throw new CommanderError(EXIT_USAGE, 'iommuctl.usage', `--pattern must be random or warm, not ${o.pattern}`);
    const span = Number(num(o.span));
    if (!(span >= 4) || span > 2 ** 32) throw new CommanderError(EXIT_USAGE, 'iommuctl.usage', '--span must be 4 bytes .. 4 GiB');
    const st = await session().stream(device, { maxInFlight: Number(o.inFlight) });
    const base = Number(num(iova));
    // Several batches so a random run does not replay one batch's addresses (whose pages would then stay cached).
    const batches = Array.from({ length: o.pattern === 'random' ? 16 : 1 }, () => {
      const b = new Uint32Array(Number(o.batch));
      for (let i = 0; i < b.length; i++) b[i] = o.pattern === 'random' ? (base + (Math.floor(Math.random() * span) & ~3)) >>> 0 : base + (i & 0xfff);
      return b;
    });
    let next = 0;
    const ms = Number(o.seconds) * 1000;
    const lat: number[] = [];
    let done = 0;
    let faults = 0;
    const t0 = Date.now();
    const tty = process.stderr.isTTY && !globals().json;
    const draw = (f: number) => process.stderr.write(`\r[${'#'.repeat(Math.round(f * 30)).padEnd(30)}] ${Math.round(f * 100)}% ${(done / 1e6).toFixed(1)}M translations`);
    const bar = tty ? setInterval(() => draw(Math.min(1, (Date.now() - t0) / ms)), 200) : undefined;
    const pump = async () => {
      while (Date.now() - t0 < ms) {
        const a = process.hrtime.bigint();
        const items = await st.translate('read', batches[next++ % batches.length]!);
        lat.push(Number(process.hrtime.bigint() - a) / 1e6);
        done += items.length;
        for (const it of items) if (it.status !== 'ok') faults++;
      }
    };
    await Promise.all(Array.from({ length: Number(o.inFlight) }, pump));
    clearInterval(bar);
    // The bar always ends drawn full, however few ticks a short run got.
    if (tty) {
      draw(1);
      process.stderr.write('\n');
    }
    st.close();
    lat.sort((a, b) => a - b);
    const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] ?? 0;
    const r = { pattern: o.pattern, ...(o.pattern === 'random' ? { span } : {}), translations: done, faults, seconds: (Date.now() - t0) / 1000, rate: done / ((Date.now() - t0) / 1000), latencyMs: { p50: pct(0.5), p90: pct(0.9), p99: pct(0.99) } };
    out(r, `${(r.rate / 1e6).toFixed(2)} M translations/s, ${o.pattern === 'random' ? `uniform random over ${span} bytes` : 'one 4 KiB page (best case: all TLB hits)'} (${done} in ${r.seconds.toFixed(1)} s, ${faults} faults); batch latency p50 ${r.latencyMs.p50.toFixed(2)} ms, p90 ${r.latencyMs.p90.toFixed(2)} ms, p99 ${r.latencyMs.p99.toFixed(2)} ms`);
  });

registerApiCommands(program, { session, client, out, num, json: () => globals().json });
registerConfigCommands(program, out, () => program.opts<{ url?: string; session?: string; token?: string }>());

program.parseAsync(process.argv).then(
  () => process.exit(0),
  (e: unknown) => {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.exitCode === 0) process.exit(0);
      if (e.code === 'iommuctl.usage') process.stderr.write(`iommuctl: ${e.message}\n`);
      process.exit(EXIT_USAGE);
    }
    if (e instanceof IommudError) {
      if (globals().json) process.stdout.write(JSON.stringify({ error: { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) } }, null, 2) + '\n');
      else process.stderr.write(`iommuctl: ${e.code}: ${e.message}\n`);
      process.exit(EXIT_API);
    }
    if (e instanceof IommudConnectionError) {
      process.stderr.write(`iommuctl: ${e.message}\n`);
      process.exit(EXIT_CONNECTION);
    }
    process.stderr.write(`iommuctl: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
