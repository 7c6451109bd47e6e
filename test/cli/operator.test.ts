import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { builtCli } from '../support/built.js';
import { ctlRunner } from '../support/ctl.js';
import { listeningDaemon } from '../support/daemon.js';
import { systemTool } from '../support/tools.js';

const daemon = listeningDaemon();
const { ctl, json, watch } = ctlRunner(daemon.url);
const script = systemTool('script', 'bsdutils');
const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Issue 12, "CLI and SDK": what an operator at a terminal sees. */
describe('iommuctl at a terminal', () => {
  it.skipIf(!script)('bench-rig shows its progress on a TTY, ending at 100%; piped, it prints the result only', async () => {
    const s = await json(['session', 'create', '--profile', 'tiny']);
    const env = { IOMMUD_SESSION: s.id, IOMMUD_TOKEN: s.token };
    const d = await json(['domain', 'alloc'], env);
    await json(['domain', 'attach', d.id, 'dev0'], env);
    await json(['domain', 'map', d.id, '0x100000', '0x80000000', '0x100000'], env);
    const args = ['bench-rig', 'dev0', '0x100000', '--seconds', '0.2', '--batch', '64', '--span', '0x100000'];
    // script(1) runs the command on a pseudo-terminal: stdout and stderr are a TTY, as at a shell prompt.
    const tty = await new Promise<string>((resolve, reject) => {
      const p = spawn(script!, ['-qec', [process.execPath, builtCli('iommuctl'), ...args].map(quote).join(' '), '/dev/null'], { env: { ...process.env, IOMMUD_URL: daemon.url(), IOMMUD_CONFIG: '/nonexistent/iommud-config.json', ...env } });
      let out = '';
      p.stdout.on('data', (b: Buffer) => (out += b.toString()));
      p.on('error', reject);
      p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}: ${out}`))));
    });
    expect(tty).toContain(`\r[${'#'.repeat(30)}] 100% `);
    expect(tty).toMatch(/M translations\/s, uniform random over 1048576 bytes/);
    const piped = await ctl(args, env);
    expect(piped.stderr).toBe('');
    expect(piped.stdout).toMatch(/^\d+\.\d\d M translations\/s, uniform random over 1048576 bytes \(\d+ in [\d.]+ s, 0 faults\); batch latency p50 [\d.]+ ms, p90 [\d.]+ ms, p99 [\d.]+ ms\n$/);
  }, 60_000);

  it("a refused stream keeps the daemon's message (no HTTP_404: stream refused)", async () => {
    const s = await json(['session', 'create', '--profile', 'tiny']);
    const r = await ctl(['bench-rig', 'nodev', '0x0', '--seconds', '0.1'], { IOMMUD_SESSION: s.id, IOMMUD_TOKEN: s.token });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^iommuctl: NOT_FOUND: .*nodev.*\n$/);
  }, 60_000);

  it('watch says on stderr when it is subscribed, then prints the events that follow', async () => {
    const s = await json(['session', 'create', '--profile', 'tiny']);
    const env = { IOMMUD_SESSION: s.id, IOMMUD_TOKEN: s.token };
    const w = watch(['--json', 'watch', '--types', 'domain', '--count', '1'], env);
    // A condition, not a delay: the event below is emitted after the subscription exists.
    const err = await w.subscribed;
    expect(err).toBe(`iommuctl: watching ${s.id} (domain)\n`);
    const d = await json(['domain', 'alloc'], env);
    const got = await w.done;
    expect(got.code).toBe(0);
    expect(JSON.parse(got.stdout)).toMatchObject({ type: 'domain', domain: d.id });
  }, 60_000);
});
