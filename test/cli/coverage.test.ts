import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/server/app.js';
import { VERSION } from '../../src/server/version.js';
import { builtCli } from '../support/built.js';

const bin = builtCli('iommuctl');
const dir = mkdtempSync(join(tmpdir(), 'iommuctl-cov-'));
let url: string;

function ctl(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { env: { ...process.env, IOMMUD_URL: url, IOMMUD_CONFIG: join(dir, 'config.json'), ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}
const json = async (args: string[], env: Record<string, string>) => {
  const r = await ctl(['--json', ...args], env);
  if (r.code !== 0) throw new Error(`iommuctl ${args.join(' ')}: exit ${r.code}: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout);
};

/** Every API route has an iommuctl command; the built binary, as users run it. */
describe('iommuctl covers the API', () => {
  let app: FastifyInstance;
  let env: Record<string, string>;
  beforeAll(async () => {
    app = await build();
    url = await app.listen({ port: 0, host: '127.0.0.1' });
    const s = await json(['session', 'create', '--profile', 'tiny'], {});
    env = { IOMMUD_SESSION: s.id, IOMMUD_TOKEN: s.token };
  }, 60_000);
  afterAll(() => app.close());

  it('version, --version, profiles, help with roles', async () => {
    expect((await ctl(['--version'])).stdout).toBe(`${VERSION}\n`);
    expect(await json(['version'], {})).toMatchObject({ name: 'iommud', version: VERSION, api: 'v1' });
    expect((await json(['profiles'], {})).map((p: { name: string }) => p.name)).toEqual(expect.arrayContaining(['msm8x60', 'tiny']));
    const help = await ctl(['dma', 'map', '--help']);
    expect(help.stdout).toContain('dma_map_single');
    expect(help.stdout).toContain('(operator)');
    expect(help.stdout).toMatch(/paddr\s+physical address/);
  }, 60_000);

  it('hardware: smmus, context show/config, mmio read/write/batch, master-access, access-batch', async () => {
    const smmus = await json(['smmus'], env);
    expect(smmus[0]).toMatchObject({ name: 'smmu0', banks: 2 });
    expect(await json(['context', 'config', 'smmu0', 'dev0', '--fault-mode', 'stall'], env)).toMatchObject({ settings: { faultMode: 'stall' } });
    expect(await json(['context', 'show', 'smmu0', '0'], env)).toMatchObject({ index: 0, device: 'dev0' });
    expect(await json(['mmio', 'write', 'smmu0', '0x1028', '0x12345000'], env)).toMatchObject({ offset: '0x1028', value: '0x12345000' });
    expect((await json(['mmio', 'read', 'smmu0', '0x1028'], env)).value).toBe('0x12345000');
    const ops = join(dir, 'ops.json');
    writeFileSync(ops, JSON.stringify([{ op: 'read', offset: '0x1028' }, { op: 'read', offset: '0x1020' }]));
    expect((await json(['mmio', 'batch', 'smmu0', ops], env)).results.map((r: { value: string }) => r.value)).toEqual(['0x12345000', '0x0']);
    expect(await json(['master-access', 'smmu0', '1', '0x1000'], env)).toMatchObject({ outcome: 'ok', paddr: '0x1000' });
    const batch = await ctl(['access-batch', 'dev1', '0x2000', '0x3000'], env);
    expect(batch.stdout).toBe('0x2000: ok 0x2000 (TLB bypass)\n0x3000: ok 0x3000 (TLB bypass)\n');
  }, 60_000);

  it('a stall: access prints the decoded fault, resume terminates it; fault inject and clear', async () => {
    const d = await json(['domain', 'alloc'], env);
    await json(['domain', 'attach', d.id, 'dev0'], env);
    const r = await ctl(['access', 'dev0', '0x7000'], env);
    expect(r.stdout).toMatch(/^stalled \(stall (\S+)\): translation fault at smmu0\/0 \(dev0\): FSR 0x40000002 \[TF SS\] FAR 0x7000 /);
    const stall = /stall (\S+)\)/.exec(r.stdout)![1]!;
    expect(await json(['resume', 'smmu0', 'dev0', stall, 'terminate'], env)).toEqual({ outcome: 'terminated' });
    await json(['context', 'config', 'smmu0', 'dev0', '--fault-mode', 'terminate'], env);
    await json(['fault', 'clear', 'smmu0', 'dev0'], env);
    await json(['domain', 'map', d.id, '0x7000', '0x80007000', '0x1000'], env);
    await json(['fault', 'inject', 'smmu0', 'dev0', 'external'], env);
    expect((await ctl(['access', 'dev0', '0x7000'], env)).stdout).toMatch(/^fault: external fault at smmu0\/0 \(dev0\): FSR 0x\S+ \[[^\]]*EF[^\]]*\] FAR 0x7000/);
    expect((await json(['fault', 'clear', 'smmu0', 'dev0'], env)).registers.FSR).toBe('0x0');
    await json(['domain', 'detach', d.id, 'dev0'], env);
  }, 60_000);

  it('IOMMU API reads: mappings with a cursor, iova-to-phys, domain free', async () => {
    const d = await json(['domain', 'alloc'], env);
    for (const i of [0, 2, 4]) await json(['domain', 'map', d.id, '0x' + (0x100000 + i * 0x1000).toString(16), '0x' + (0x80000000 + i * 0x1000).toString(16), '0x1000'], env);
    const page = await json(['mappings', d.id, '--limit', '2'], env);
    expect(page.items.map((m: { iova: string }) => m.iova)).toEqual(['0x100000', '0x102000']);
    expect(page.next).toEqual({ from: '0x103000', limit: 2 });
    expect((await json(['mappings', d.id], env)).items).toHaveLength(3);
    expect(await json(['iova-to-phys', d.id, '0x102010'], env)).toMatchObject({ paddr: '0x80002010', pageSize: 4096 });
    await json(['domain', 'unmap', d.id, '0x100000', '0x5000'], env);
    expect(await json(['domain', 'free', d.id], env)).toEqual({ freed: d.id });
  }, 60_000);

  it('DMA API and buffers: alloc, dma config/map/map-sg/sync/show/unmap, list, free, pools', async () => {
    const b = await json(['buffer', 'alloc', '0x2000'], env);
    const c = await json(['buffer', 'alloc', '0x1000'], env);
    expect((await json(['buffer', 'list'], env)).items.map((x: { paddr: string }) => x.paddr)).toEqual(expect.arrayContaining([b.paddr, c.paddr]));
    expect(await json(['dma', 'config', 'dev1', '--flush', 'deferred'], env)).toMatchObject({ flushPolicy: 'deferred' });
    const m = await json(['dma', 'map', 'dev1', b.paddr, '0x2000', '--dir', 'to-device'], env);
    const sg = await json(['dma', 'map-sg', 'dev1', `${c.paddr}:0x1000`, '--dir', 'from-device'], env);
    expect(sg.segments).toHaveLength(1);
    expect(await json(['dma', 'sync', 'dev1', m.dmaAddr, '0x1000', '--for', 'device', '--offset', '0x1000'], env)).toEqual({ synced: m.dmaAddr, for: 'device' });
    expect((await json(['dma', 'show', 'dev1'], env)).mappings).toHaveLength(2);
    await json(['dma', 'unmap', 'dev1', m.dmaAddr, '0x2000', '--dir', 'to-device'], env);
    await json(['dma', 'unmap', 'dev1', sg.dmaAddr, '0x1000', '--dir', 'from-device'], env);
    const bad = await ctl(['--json', 'dma', 'unmap', 'dev1', m.dmaAddr, '0x2000', '--dir', 'to-device'], env);
    expect(bad.code).toBe(3);
    expect(JSON.parse(bad.stdout).error.code).toBe('DMA_DEBUG');
    await json(['buffer', 'free', c.paddr], env);
    expect((await json(['pools'], env))[0]).toMatchObject({ name: 'ram' });
  }, 60_000);

  it('memory: write --hex / --file, read as a hex dump or --out', async () => {
    const b = await json(['buffer', 'alloc', '0x1000'], env);
    await json(['memory', 'write', b.paddr, '--hex', '48656c6c6f2c20534d4d5521'], env);
    const dump = await ctl(['memory', 'read', b.paddr, '16'], env);
    expect(dump.stdout).toBe(`${b.paddr.slice(2).padStart(8, '0')}  48 65 6c 6c 6f 2c 20 53 4d 4d 55 21 00 00 00 00  |Hello, SMMU!....|\n`);
    const f = join(dir, 'blob.bin');
    writeFileSync(f, Buffer.from([1, 2, 3]));
    await json(['memory', 'write', b.paddr, '--file', f], env);
    const outFile = join(dir, 'out.bin');
    await json(['memory', 'read', b.paddr, '4', '--out', outFile], env);
    expect([...readFileSync(outFile)]).toEqual([1, 2, 3, 0x6c]);
    expect((await ctl(['memory', 'write', b.paddr, '--hex', 'abc'], env)).code).toBe(2);
  }, 60_000);

  it('contexts in the config file: set-context, use, precedence of flags; file is private', async () => {
    const s = await json(['session', 'create', '--profile', 'tiny', '--name', 'ctx'], {});
    expect((await ctl(['config', 'set-context', 'lab', '--url', url, '--session', s.id, '--token', s.token])).code).toBe(0);
    expect((await ctl(['use', 'lab'])).stdout).toBe('switched to context lab\n');
    expect(await json(['session', 'show'], { IOMMUD_URL: '' })).toMatchObject({ id: s.id, name: 'ctx' });
    expect(statSync(join(dir, 'config.json')).mode & 0o777).toBe(0o600);
    const rows = await json(['config', 'get-contexts'], {});
    expect(rows).toEqual([{ name: 'lab', current: true, url, session: s.id }]);
    expect((await ctl(['use', 'nope'])).code).toBe(2);
    // A flag wins over the context.
    expect((await json(['session', 'show', '--session', env.IOMMUD_SESSION!, '--token', env.IOMMUD_TOKEN!], {})).id).toBe(env.IOMMUD_SESSION);
  }, 60_000);

  it('completion scripts know the command tree; trace replay of a missing file is exit 2', async () => {
    const bash = await ctl(['completion', 'bash']);
    expect(bash.stdout).toContain('complete -F _iommuctl iommuctl');
    expect(bash.stdout).toContain('"dma") words="show config map map-sg unmap sync');
    expect((await ctl(['completion', 'zsh'])).stdout).toContain('bashcompinit');
    const missing = await ctl(['trace', 'replay', join(dir, 'nope.jsonl')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe(`iommuctl: trace replay: no such file ${join(dir, 'nope.jsonl')}\n`);
  }, 60_000);
});
