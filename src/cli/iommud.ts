#!/usr/bin/env node
/**
 * iommud: start the daemon. In memory, msm8x60 profile, 127.0.0.1:8080 unless PORT/HOST or --port/--host say
 * otherwise; --demo also creates a session and prints its id and owner token.
 * A start that cannot work (a mistyped option, a bad number, a port in use, a data dir that cannot hold
 * journals) ends with one line on stderr and a non-zero exit: 2 for usage, 1 for the environment.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_NODE_ID, isNodeId } from '../cluster/node.js';
import { MSM8X60 } from '../hw/profile.js';
import { build } from '../server/app.js';

const USAGE =
  'usage: iommud [--port N] [--host ADDR] [--data-dir DIR] [--compact-every RECORDS] [--rate-limit REQ_PER_S] [--node-id NAME] [--max-sessions N]\n' +
  '              [--max-ram-per-session BYTES] [--max-ram BYTES] [--trace-memory BYTES] [--demo]\n' +
  '  BYTES: a whole number, or with a K, M or G suffix (KiB, MiB, GiB)\n' +
  '  --max-ram-per-session  emulated RAM one session may write (held in 64 KiB chunks; default 1G); past it LIMIT\n' +
  '  --max-ram              emulated RAM all sessions together may write (default: half the machine\'s memory)\n' +
  '  --trace-memory         in-memory trace per session without --data-dir (default 64M); past it the trace\n' +
  '                         restarts from a snapshot, and a state larger than this cannot be exported (NO_SPACE)\n' +
  '  env: PORT, HOST, IOMMUD_DATA_DIR, IOMMUD_COMPACT_EVERY, IOMMUD_RATE_LIMIT, IOMMUD_NODE_ID, IOMMUD_MAX_SESSIONS,\n' +
  '       IOMMUD_MAX_RAM_PER_SESSION, IOMMUD_MAX_RAM, IOMMUD_TRACE_MEMORY, LOG_LEVEL\n';
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

class StartError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}
const usage = (msg: string): never => {
  throw new StartError(`${msg} (iommud --help for the options)`, 2);
};

/** A number option: refused unless the whole string is a number in range (Number('') is 0, '1e3' is fine). */
function numberOption(name: string, text: string | undefined, opts: { integer: boolean; min: number; max?: number }): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  const ok = text.trim() !== '' && Number.isFinite(n) && n >= opts.min && n <= (opts.max ?? Infinity) && (!opts.integer || Number.isInteger(n));
  if (!ok) usage(`${name} takes ${opts.integer ? 'a whole number' : 'a number'} from ${opts.min}${opts.max !== undefined ? ` to ${opts.max}` : ' up'}, not ${JSON.stringify(text)}`);
  return n;
}

/** A byte-size option: a whole number of bytes, or one with a K, M or G suffix (binary units). */
function byteOption(name: string, text: string | undefined, min: number): number | undefined {
  if (text === undefined) return undefined;
  const m = /^\s*(\d+)\s*([KMG]?)\s*$/i.exec(text);
  const n = m ? Number(m[1]) * 1024 ** ' KMG'.indexOf((m[2] || ' ').toUpperCase()) : NaN;
  if (!Number.isSafeInteger(n) || n < min) usage(`${name} takes a size of at least ${min} bytes (a whole number, or with a K, M or G suffix), not ${JSON.stringify(text)}`);
  return n;
}

/** The flag when given, else its environment twin. */
const named = (values: Record<string, unknown>, flag: string, env: string): [string, string | undefined] =>
  values[flag] !== undefined ? [`--${flag}`, values[flag] as string] : [env, process.env[env]];

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        demo: { type: 'boolean', default: false },
        'data-dir': { type: 'string' },
        'compact-every': { type: 'string' },
        'rate-limit': { type: 'string' },
        'node-id': { type: 'string' },
        'max-sessions': { type: 'string' },
        'max-ram-per-session': { type: 'string' },
        'max-ram': { type: 'string' },
        'trace-memory': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (e) {
    // parseArgs explains at length; its first sentence names the option.
    return usage((e as Error).message.split('. ')[0]!.replace(/^Unknown option/, 'unknown option'));
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }

  const port = numberOption(values.port !== undefined ? '--port' : 'PORT', values.port ?? process.env.PORT, { integer: true, min: 0, max: 65535 }) ?? 8080;
  const host = values.host ?? process.env.HOST ?? '127.0.0.1';
  const nodeId = values['node-id'] ?? process.env.IOMMUD_NODE_ID ?? DEFAULT_NODE_ID;
  if (!isNodeId(nodeId)) usage(`bad node id ${JSON.stringify(nodeId)} (1-16 lower-case letters and digits)`);
  const maxSessionsArg = values['max-sessions'] ?? process.env.IOMMUD_MAX_SESSIONS;
  const maxSessions = maxSessionsArg === undefined ? undefined : Number(maxSessionsArg);
  if (maxSessions !== undefined && (!Number.isSafeInteger(maxSessions) || maxSessions < 1)) {
    throw new StartError(`bad --max-sessions ${JSON.stringify(maxSessionsArg)} (a whole number of at least 1)`, 2);
  }
  const level = process.env.LOG_LEVEL ?? 'info';
  if (!LOG_LEVELS.includes(level)) usage(`LOG_LEVEL is one of ${LOG_LEVELS.join(', ')}, not ${JSON.stringify(level)}`);
  const dataDir = values['data-dir'] ?? process.env.IOMMUD_DATA_DIR ?? null;
  const compactEvery = numberOption(values['compact-every'] !== undefined ? '--compact-every' : 'IOMMUD_COMPACT_EVERY', values['compact-every'] ?? process.env.IOMMUD_COMPACT_EVERY, { integer: true, min: 0 });
  const rate = numberOption(values['rate-limit'] !== undefined ? '--rate-limit' : 'IOMMUD_RATE_LIMIT', values['rate-limit'] ?? process.env.IOMMUD_RATE_LIMIT, { integer: false, min: 0 });
  const maxRamPerSession = byteOption(...named(values, 'max-ram-per-session', 'IOMMUD_MAX_RAM_PER_SESSION'), 0);
  const maxRam = byteOption(...named(values, 'max-ram', 'IOMMUD_MAX_RAM'), 0);
  // At least a page table's worth: a budget too small for any snapshot would make every export NO_SPACE.
  const traceMemory = byteOption(...named(values, 'trace-memory', 'IOMMUD_TRACE_MEMORY'), 64 * 1024);

  let app: Awaited<ReturnType<typeof build>>;
  try {
    app = await build({
      dataDir,
      nodeId,
      limits: { ...(rate !== undefined ? { requestsPerSecond: rate } : {}), ...(maxSessions !== undefined ? { maxSessions } : {}) },
      ...(compactEvery !== undefined ? { compactEvery } : {}),
      ...(maxRamPerSession !== undefined ? { maxRamPerSession } : {}),
      ...(maxRam !== undefined ? { maxRam } : {}),
      ...(traceMemory !== undefined ? { traceMemory } : {}),
      logger: {
        level,
        // Never log tokens: drop the query string (?token=) and the Authorization header from request logs.
        serializers: {
          req: (req: { method: string; url: string; id: string }) => ({ id: req.id, method: req.method, url: req.url.split('?')[0] }),
        },
        ...(process.stdout.isTTY ? { transport: { target: 'pino-pretty', options: { translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } } } : {}),
      },
    });
  } catch (e) {
    throw new StartError((e as Error).message, 1);
  }

  let closing = false;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (closing) return;
      closing = true;
      app.log.info({ signal: sig }, 'shutting down');
      const force = setTimeout(() => process.exit(1), 10_000);
      force.unref();
      app.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }

  try {
    await app.listen({ port, host });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'EADDRINUSE' ? 'the port is in use' : err.code === 'EADDRNOTAVAIL' ? 'no such local address' : err.code === 'EACCES' ? 'permission denied' : err.message;
    await app.close().catch(() => {});
    throw new StartError(`cannot listen on ${host}:${port}: ${why}`, 1);
  }
  if (values.demo) {
    // With a data dir the demo session of an earlier run was restored: reuse it (with a fresh owner token, since
    // only token digests are kept) rather than adding one more demo session at every restart.
    const restored = [...app.registry.sessions.values()].find((s) => s.name === 'demo');
    if (restored) {
      const { token, durable } = restored.mintToken('owner', 'owner');
      await durable;
      process.stdout.write(`demo session: ${restored.id} (restored)\nowner token: ${token}\n`);
    } else {
      const { session, token } = await app.registry.create({ name: 'demo', profile: MSM8X60 });
      process.stdout.write(`demo session: ${session.id}\nowner token: ${token}\n`);
    }
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`iommud: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}\n`);
  process.exit(e instanceof StartError ? e.exitCode : 1);
});
