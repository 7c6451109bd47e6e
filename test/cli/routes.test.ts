import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMAND_ROUTES, type CommandRow } from '../../src/cli/ctl-api.js';
import { build } from '../../src/server/app.js';
import { ctlRunner } from '../support/ctl.js';

let app: FastifyInstance;
let url = '';
const { ctl, json } = ctlRunner(() => url);
const root = new URL('../../', import.meta.url);

/** The routes the daemon serves, from its OpenAPI document, as `METHOD /path/:param` (the dashboard, its static files and /docs left out). */
async function servedRoutes(): Promise<string[]> {
  const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json() as { paths: Record<string, Record<string, unknown>> };
  const routes: string[] = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    if (path === '/' || /^\/(docs|ui|vendor)(\/|$)/.test(path)) continue;
    for (const method of Object.keys(ops)) routes.push(`${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1').replace(/(.)\/$/, '$1')}`);
  }
  return routes.sort();
}

/** The role a route needs, as the session auth hook decides it (GET: observer, else operator, unless the route says). */
function neededRole(route: string): string {
  if (route === 'DELETE /v1/sessions/:sid' || route === 'POST /v1/sessions/:sid/tokens') return 'owner';
  if (route.endsWith('/stream')) return 'operator';
  return route.startsWith('GET ') ? 'observer' : 'operator';
}

describe('iommuctl routes: a command for every route the daemon serves', () => {
  let rows: CommandRow[];
  beforeAll(async () => {
    app = await build();
    url = await app.listen({ port: 0, host: '127.0.0.1' });
    rows = await json(['routes']);
  }, 60_000);
  afterAll(() => app.close());

  it('every served route is called by a command, and every route a command names is served', async () => {
    const served = await servedRoutes();
    expect(served.length).toBeGreaterThan(50);
    const called = new Set(rows.flatMap((r) => r.routes));
    expect(served.filter((r) => !called.has(r))).toEqual([]);
    expect([...called].filter((r) => !served.includes(r))).toEqual([]);
    // Every command that runs is in the route table (a new command must say what it calls, or [] if local).
    expect(rows.map((r) => r.command).sort()).toEqual(Object.keys(COMMAND_ROUTES).sort());
    expect(rows.find((r) => r.command === 'domain show')!.routes).toEqual(['GET /v1/sessions/:sid/domains', 'GET /v1/sessions/:sid/domains/:did']);
  });

  it('help says what each command does, what its arguments mean and the role it needs', async () => {
    for (const r of rows) {
      expect(r.description, r.command).not.toBe('');
      for (const a of r.arguments) expect(a.description, `${r.command} <${a.name}>`).not.toBe('');
      const inSession = r.routes.filter((x) => x.includes(' /v1/sessions/:sid'));
      if (inSession.length) expect(r.description, r.command).toMatch(new RegExp(`\\(${neededRole(inSession[0]!)}\\b`));
      else if (r.routes.length) expect(r.description, r.command).toContain('no token');
    }
    const help = await ctl(['domain', 'attach', '--help']);
    expect(help.stdout).toContain('iommu_attach_device: program the context bank (operator)');
    expect(help.stdout).toMatch(/domain\s+domain id \(see `domain show`\)/);
    expect(help.stdout).toMatch(/device\s+device: a context name \(see `smmus`\)/);
    expect((await ctl(['cache', 'clean', '--help'])).stdout).toMatch(/clean \(write back dirty lines\) of a physical range \(operator\)/);
  });

  it('docs/cli.md is the table the command tree gives (npm run cli-doc regenerates it)', async () => {
    const r = await ctl(['routes', '--markdown']);
    expect(r.code).toBe(0);
    expect(readFileSync(new URL('docs/cli.md', root), 'utf8')).toBe(r.stdout);
    expect(r.stdout).toContain('| `iommuctl domain pagetable <domain>` | GET | `/v1/sessions/:sid/domains/:did/pagetable` |');
    expect(r.stdout).toContain('| `iommuctl watch` | GET | `/v1/sessions/:sid/events` |');
    expect(readFileSync(new URL('README.md', root), 'utf8')).toContain('](docs/cli.md)');
  });

  it('health, metrics and domain batch: the routes that had no command', async () => {
    const h = await json(['health']);
    expect(h).toMatchObject({ status: 'ok', node: 's' });
    expect((await ctl(['health'])).stdout).toMatch(/^ok: node s, \d+ sessions, up \d+ s\n$/);
    const s = await json(['session', 'create', '--profile', 'tiny']);
    const env = { IOMMUD_SESSION: s.id, IOMMUD_TOKEN: s.token };
    const d = await json(['domain', 'alloc'], env);
    const file = join(mkdtempSync(join(tmpdir(), 'iommuctl-batch-')), 'ops.json');
    writeFileSync(file, JSON.stringify({ ops: [{ op: 'map', iova: '0x100000', paddr: '0x80000000', size: '0x2000', prot: ['read'] }, { op: 'unmap', iova: '0x101000', size: '0x1000' }] }));
    const b = await ctl(['domain', 'batch', d.id, file], env);
    expect(b.stdout).toBe('map 0x100000 +2000\nunmap 4096 bytes\n');
    expect(await json(['mappings', d.id], env)).toEqual({ items: [{ iova: '0x100000', paddr: '0x80000000', size: 4096, pageSize: 4096, prot: ['read'] }], next: null });
    // All or nothing: a batch whose second op is refused changes nothing.
    writeFileSync(file, JSON.stringify([{ op: 'map', iova: '0x200000', paddr: '0x80000000', size: '0x1000', prot: ['read'] }, { op: 'map', iova: '0x100000', paddr: '0x80000000', size: '0x1000', prot: ['read'] }]));
    const refused = await ctl(['--json', 'domain', 'batch', d.id, file], env);
    expect(refused.code).toBe(3);
    expect(JSON.parse(refused.stdout).error.code).toBe('ALREADY_MAPPED');
    expect((await json(['mappings', d.id], env)).items).toHaveLength(1);
    writeFileSync(file, '{"ops": 3}');
    expect(await ctl(['domain', 'batch', d.id, file], env)).toEqual({ code: 2, stdout: '', stderr: `iommuctl: ${file}: expected an array of ops\n` });
    // metrics: the exposition text, or its samples with --json.
    await json(['access', 'dev0', '0x0'], env);
    const text = (await ctl(['metrics'])).stdout;
    expect(text).toContain('# TYPE iommud_transactions_total counter');
    const samples = await json(['metrics']);
    expect(samples).toContainEqual({ name: 'iommud_tlb_hits_total', labels: { smmu: 'smmu0' }, value: 0 });
    expect(samples.find((x: { name: string }) => x.name === 'iommud_transactions_total').value).toBeGreaterThanOrEqual(1);
  }, 60_000);
});
