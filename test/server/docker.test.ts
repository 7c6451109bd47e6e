import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import semver from 'semver';
import { describe, expect, it } from 'vitest';
import { build } from '../../src/server/app.js';
// @ts-expect-error: a plain ES module the image runs as is (no types to build)
import { probePort } from '../../docker/healthcheck.mjs';

const root = new URL('../../', import.meta.url);
const read = (p: string) => readFileSync(new URL(p, root), 'utf8');

/** No Docker engine on the build machines: the image's steps are checked against package.json instead. */
describe('Dockerfile mirrors the README', () => {
  const docker = read('Dockerfile');
  const pkg = JSON.parse(read('package.json'));
  const readme = read('README.md');

  it('runs npm scripts that exist, and the entry that npm start runs', () => {
    for (const m of docker.matchAll(/npm run (\w+)/g)) expect(pkg.scripts, m[1]).toHaveProperty(m[1]!);
    expect(docker).toContain('npm ci');
    expect(pkg.scripts.start).toBe('node dist/src/cli/iommud.js');
    expect(docker).toContain('ENTRYPOINT ["node", "dist/src/cli/iommud.js"]');
    expect(pkg.scripts.build).toBe('tsc -p tsconfig.json');
    expect(docker).toContain('COPY tsconfig.json');
  });

  it('uses a supported Node LTS (22), a non-root user, a health check on /health and a data volume', () => {
    expect(docker).toMatch(/FROM node:22-bookworm-slim AS build/);
    expect(docker).toMatch(/FROM node:22-bookworm-slim AS runtime/);
    expect(docker).toMatch(/^USER node$/m);
    expect(docker).toContain('CMD ["node", "docker/healthcheck.mjs"]');
    expect(docker).toContain('COPY docker/healthcheck.mjs ./docker/healthcheck.mjs');
    expect(docker).toContain('VOLUME ["/data"]');
  });

  it('.dockerignore keeps the build context to what the stages copy', () => {
    const ignored = read('.dockerignore').split('\n').filter((l) => l && !l.startsWith('#'));
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', 'dist', '.git', 'test']));
    for (const copied of docker.matchAll(/^COPY (?!--from)(\S+)/gm)) expect(ignored, copied[1]).not.toContain(copied[1]!.split('/')[0]);
  });

  it('the health probe follows --port, then PORT, then 8080', () => {
    expect(probePort(['node', 'dist/src/cli/iommud.js', '--port', '9000', ''], { PORT: '8080' })).toBe('9000');
    expect(probePort(['node', 'dist/src/cli/iommud.js', '--port=9100', ''], {})).toBe('9100');
    expect(probePort(['node', 'dist/src/cli/iommud.js', ''], { PORT: '8181' })).toBe('8181');
    expect(probePort([''], {})).toBe('8080');
  });

  it('the health probe exits 0 against a live daemon on the port of its command line, 1 elsewhere', async () => {
    const app = await build();
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    const port = new URL(url).port;
    const dir = mkdtempSync(join(tmpdir(), 'iommud-hc-'));
    const probe = (cmdline: string[]) => {
      const f = join(dir, 'cmdline');
      writeFileSync(f, cmdline.join('\0') + '\0');
      return new Promise<number>((resolve) =>
        execFile(process.execPath, ['docker/healthcheck.mjs'], { env: { ...process.env, PORT: '1', IOMMUD_PID1_CMDLINE: f } }, (err) =>
          resolve(err ? ((err as { code?: number }).code ?? 1) : 0),
        ),
      );
    };
    try {
      expect(await probe(['node', 'dist/src/cli/iommud.js', '--port', port])).toBe(0);
      expect(await probe(['node', 'dist/src/cli/iommud.js', '--port', '1'])).toBe(1);
    } finally {
      await app.close();
    }
  });

  it('engines matches the dependency tree: every Node that engines allows, every locked package accepts', () => {
    const lock = JSON.parse(read('package-lock.json'));
    const refused = Object.entries(lock.packages as Record<string, { engines?: { node?: string } | string[] }>)
      .filter(([, p]) => p.engines && !Array.isArray(p.engines) && typeof p.engines.node === 'string')
      .filter(([, p]) => !semver.subset(pkg.engines.node, (p.engines as { node: string }).node))
      .map(([name, p]) => `${name}: ${(p.engines as { node: string }).node}`);
    expect(refused).toEqual([]);
  });

  it('the README stands on its own: links stay inside the repository, tools are Debian\'s or ours', () => {
    const links = [...readme.matchAll(/\]\(([^)#]+)[^)]*\)/g)].map((m) => m[1]!).filter((l) => !/^https?:/.test(l));
    for (const l of links) expect(existsSync(new URL(l, root)), l).toBe(true);
    expect(readme).not.toMatch(/\.\.\/shared/);
    expect(readme).not.toMatch(/websocat/);
  });

  it('the README quick start is the two commands', () => {
    expect(readme).toContain('npm ci && npm start');
    expect(readme).toContain('npm ci && npm test');
  });
});

describe('iommud --demo with --data-dir', () => {
  /** Starts the daemon, waits for its demo lines, stops it with SIGTERM. */
  function runDemo(dataDir: string): Promise<{ id: string; token: string; out: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/iommud.ts', '--demo', '--port', '0', '--data-dir', dataDir], {
        env: { ...process.env, LOG_LEVEL: 'silent' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let done = false;
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /demo session: (\S+).*\nowner token: (\S+)\n/.exec(out);
        if (m && !done) {
          done = true;
          child.once('exit', () => resolve({ id: m[1]!, token: m[2]!, out }));
          child.kill('SIGTERM');
        }
      });
      child.once('exit', (code) => done || reject(new Error(`daemon exited ${code}: ${out}`)));
    });
  }

  it('reuses the restored demo session (fresh owner token) instead of adding one per restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'iommud-demo-'));
    const first = await runDemo(dir);
    const second = await runDemo(dir);
    expect(second.id).toBe(first.id);
    expect(second.out).toContain(`demo session: ${first.id} (restored)`);
    expect(second.token).not.toBe(first.token);
    const journals = (await import('node:fs')).readdirSync(dir).filter((f) => f.endsWith('.journal'));
    expect(journals).toEqual([`${first.id}.journal`]);
  }, 30_000);
});
