/**
 * Starting the daemon wrong, as a new user would: each mistake is one clear line on stderr and a non-zero exit
 * (2 usage, 1 environment), never a stack trace and never a hang.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

function start(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/iommud.ts', ...args], { env: { ...process.env, LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (d) => (stderr += String(d)));
    proc.once('exit', (code) => resolve({ code, stderr }));
  });
}

let dir = '';
let busy: Server;
let busyPort = 0;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'iommud-cli-'));
  writeFileSync(join(dir, 'a-file'), 'x');
  busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  busyPort = (busy.address() as { port: number }).port;
});
afterAll(() => {
  busy.close();
  rmSync(dir, { recursive: true, force: true });
});

describe.concurrent('iommud refuses a start that cannot work', () => {
  const cases: Array<[string, () => string[], Record<string, string>, number, RegExp]> = [
    ['a mistyped option', () => ['--prot', '9000'], {}, 2, /^iommud: unknown option '--prot'/],
    ['--rate-limit abc', () => ['--rate-limit', 'abc'], {}, 2, /^iommud: --rate-limit takes a number from 0 up, not "abc"/],
    ['--compact-every=abc', () => ['--compact-every=abc'], {}, 2, /^iommud: --compact-every takes a whole number from 0 up, not "abc"/],
    ['IOMMUD_COMPACT_EVERY=-1', () => [], { IOMMUD_COMPACT_EVERY: '-1' }, 2, /^iommud: IOMMUD_COMPACT_EVERY takes a whole number/],
    ['--port 70000', () => ['--port', '70000'], {}, 2, /^iommud: --port takes a whole number from 0 to 65535, not "70000"/],
    ['LOG_LEVEL=loud', () => [], { LOG_LEVEL: 'loud' }, 2, /^iommud: LOG_LEVEL is one of /],
    ['a port in use', () => ['--port', String(busyPort)], {}, 1, /^iommud: cannot listen on 127\.0\.0\.1:\d+: the port is in use/],
    ['a data dir under a file', () => ['--port', '0', '--data-dir', join(dir, 'a-file', 'journals')], {}, 1, /^iommud: the data dir .* cannot hold journals: ENOTDIR/],
    ['a data dir under /proc (used to spin forever)', () => ['--port', '0', '--data-dir', '/proc/iommud/journals'], {}, 1, /^iommud: the data dir \/proc\/iommud\/journals cannot hold journals/],
    ['/proc itself as the data dir', () => ['--port', '0', '--data-dir', '/proc'], {}, 1, /^iommud: the data dir \/proc cannot hold journals/],
    ['--max-ram lots', () => ['--max-ram', 'lots'], {}, 2, /^iommud: --max-ram takes a size of at least 0 bytes \(a whole number, or with a K, M or G suffix\), not "lots"/],
    ['IOMMUD_MAX_RAM_PER_SESSION=1.5G', () => [], { IOMMUD_MAX_RAM_PER_SESSION: '1.5G' }, 2, /^iommud: IOMMUD_MAX_RAM_PER_SESSION takes a size/],
    ['--trace-memory 1K (less than a snapshot)', () => ['--trace-memory', '1K'], {}, 2, /^iommud: --trace-memory takes a size of at least 65536 bytes/],
  ];
  it.each(cases)('%s: one line on stderr, a non-zero exit', async (_name, args, env, code, line) => {
    const r = await start(args(), env);
    expect(r.stderr).toMatch(line);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.code).toBe(code);
  }, 120_000);
});

it('--help names the budgets and their environment twins', async () => {
  const out = await new Promise<string>((resolve) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/iommud.ts', '--help'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let text = '';
    proc.stdout.on('data', (d) => (text += String(d)));
    proc.once('exit', () => resolve(text));
  });
  for (const word of ['--max-ram-per-session BYTES', '--max-ram BYTES', '--trace-memory BYTES', 'IOMMUD_MAX_RAM_PER_SESSION', 'IOMMUD_MAX_RAM,', 'IOMMUD_TRACE_MEMORY']) expect(out).toContain(word);
}, 120_000);
