import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/server/app.js';
import { builtCli } from '../support/built.js';
import { ctlRunner } from '../support/ctl.js';

const bin = builtCli('iommuctl');

let app: FastifyInstance;
let url: string;

function ctl(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { env: { ...process.env, IOMMUD_URL: url, IOMMUD_CONFIG: '/nonexistent/iommud-config.json', ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('iommuctl as a child process', () => {
  let env: Record<string, string>;
  beforeAll(async () => {
    app = await build();
    url = await app.listen({ port: 0, host: '127.0.0.1' });
    const s = await ctl(['--json', 'session', 'create', '--profile', 'tiny', '--name', 'cli']);
    expect(s.code).toBe(0);
    const created = JSON.parse(s.stdout);
    env = { IOMMUD_SESSION: created.id, IOMMUD_TOKEN: created.token };
  }, 30_000);
  afterAll(() => app.close());

  it('domain alloc, attach, map, access, pagetable, show with exact --json output', async () => {
    const d = JSON.parse((await ctl(['--json', 'domain', 'alloc'], env)).stdout);
    expect(d).toMatchObject({ id: 'dom-1', ttbr0: '0x83e00000', attached: [] });
    expect((await ctl(['domain', 'attach', 'dom-1', 'dev0'], env)).stdout).toBe('dev0 attached to dom-1\n');
    const m = await ctl(['--json', 'domain', 'map', 'dom-1', '0x100000', '0x80000000', '0x100000', '--prot', 'read'], env);
    expect(JSON.parse(m.stdout)).toEqual({ iova: '0x100000', size: 1048576, pages: { '4K': 0, '64K': 0, '1M': 1, '16M': 0 } });
    expect((await ctl(['access', 'dev0', '0x100010'], env)).stdout).toBe('ok 0x80000010 (TLB miss)\n');
    expect((await ctl(['access', 'dev0', '0x100010', '--as', 'write'], env)).stdout).toBe('fault: permission fault at smmu0/0 (dev0): FSR 0x8 [APF] FAR 0x100010 FSYNR0 0x0 FSYNR1 0x100\n');
    expect((await ctl(['domain', 'pagetable', 'dom-1'], env)).stdout).toBe('TTBR0 0x83e00000\nL1[1] 0x80039c02\n');
    expect(JSON.parse((await ctl(['--json', 'domain', 'show', 'dom-1'], env)).stdout)).toMatchObject({ id: 'dom-1', attached: ['dev0'], mappedBytes: 0x100000 });
  }, 30_000);

  it('exit codes: usage 2, API error 3, connection error 4', async () => {
    expect((await ctl(['domain', 'map', 'dom-1', 'xyz', '0', '0'], env)).code).toBe(2);
    expect((await ctl(['domain', 'show'], {})).code).toBe(2);
    expect((await ctl(['nonsense'], env)).code).toBe(2);
    const api = await ctl(['--json', 'domain', 'unmap', 'dom-1', '0x50000000', '0x1000'], env);
    expect(api.code).toBe(3);
    expect(JSON.parse(api.stdout).error.code).toBe('NOT_MAPPED');
    expect((await ctl(['session', 'show'], { ...env, IOMMUD_URL: 'http://127.0.0.1:1' })).code).toBe(4);
  }, 30_000);

  it('watch prints live events; trace export and replay', async () => {
    // Map once the daemon has accepted the subscription (its notice on stderr), not after a guessed delay.
    const w = ctlRunner(() => url).watch(['--json', 'watch', '--types', 'map', '--count', '1'], env);
    expect(await w.subscribed).toBe(`iommuctl: watching ${env.IOMMUD_SESSION} (map)\n`);
    await ctl(['domain', 'map', 'dom-1', '0x200000', '0x80000000', '0x1000'], env);
    const got = await w.done;
    expect(got.code).toBe(0);
    expect(JSON.parse(got.stdout)).toMatchObject({ type: 'map', domain: 'dom-1', iova: '0x200000', size: 4096 });
    const file = join(mkdtempSync(join(tmpdir(), 'iommuctl-')), 'trace.jsonl');
    expect((await ctl(['--json', 'trace', 'export', '--out', file], env)).code).toBe(0);
    expect(readFileSync(file, 'utf8').split('\n')[0]).toContain('iommud-trace');
    const r = JSON.parse((await ctl(['--json', 'trace', 'replay', file])).stdout);
    const pt = await ctl(['--json', 'domain', 'pagetable', 'dom-1'], { IOMMUD_SESSION: r.id, IOMMUD_TOKEN: r.token });
    expect(JSON.parse(pt.stdout)).toEqual(JSON.parse((await ctl(['--json', 'domain', 'pagetable', 'dom-1'], env)).stdout));
  }, 30_000);

  it('bench-rig drives the stream and reports rate and percentiles', async () => {
    // The realistic pattern (uniform random over the mapped 1 MiB) and the best case (one page), each labelled.
    const r = await ctl(['--json', 'bench-rig', 'dev0', '0x100000', '--seconds', '1', '--batch', '256', '--span', '0x100000'], env);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ pattern: 'random', span: 0x100000, faults: 0 });
    expect(j.translations).toBeGreaterThan(1000);
    expect(j.latencyMs.p99).toBeGreaterThanOrEqual(j.latencyMs.p50);
    const w = JSON.parse((await ctl(['--json', 'bench-rig', 'dev0', '0x100000', '--seconds', '1', '--batch', '256', '--pattern', 'warm'], env)).stdout);
    expect(w).toMatchObject({ pattern: 'warm', faults: 0 });
    expect((await ctl(['bench-rig', 'dev0', '0x100000', '--pattern', 'hot'], env)).code).toBe(2);
  }, 30_000);
});
