import { execFile } from 'node:child_process';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/server/app.js';

let app: FastifyInstance;
let url: string;

function ctl(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'src/cli/iommuctl.ts', ...args], { env: { ...process.env, IOMMUD_URL: url, ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('iommuctl cache and dma (API.md v1.1)', () => {
  beforeAll(async () => {
    app = await build();
    url = await app.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(() => app.close());

  it('session create --cpu-cache --bounce, dma config --direct, a bounced map, cache show and clean', async () => {
    const s = await ctl(['--json', 'session', 'create', '--profile', 'tiny', '--line-size', '64', '--lines', '16', '--bounce', '0x80100000:0x4000']);
    expect(s.code).toBe(0);
    const { id, token } = JSON.parse(s.stdout);
    const env = { IOMMUD_SESSION: id, IOMMUD_TOKEN: token };
    expect((await ctl(['dma', 'config', 'dev0', '--direct', '--limit', '0x80ffffff'], env)).stdout).toBe('dev0: direct mode, domain -, limit 0x80ffffff, 0 mappings\n');
    expect((await ctl(['dma', 'map', 'dev0', '0x82000000', '0x900', '--dir', 'to-device'], env)).stdout).toBe('dma 0x80100000 +2304\n');
    expect((await ctl(['dma', 'show', 'dev0'], env)).stdout).toBe(
      'dev0: direct mode, domain -, limit 0x80ffffff, 1 mappings\n  0x80100000 +2304 to-device owned by device bounced via 0x80100000 (2 slots)\n',
    );
    // The bounce copy was a CPU copy: the slots' last lines are cached (clean, after the map's maintenance).
    expect((await ctl(['cache', 'show', '0x80100840', '0x80'], env)).stdout).toBe('16/16 lines of 64 bytes\n  0x80100840\n  0x80100880\n');
    expect((await ctl(['--json', 'cache', 'flush', '0x80100800', '0x100'], env)).stdout).toBe('{\n  "lines": 4\n}\n');
  }, 180_000);
});
