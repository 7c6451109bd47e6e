import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

/** No Docker engine on the build machines: the image's steps are checked against package.json instead. */
describe('Dockerfile mirrors the README', () => {
  const docker = readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8');
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

  it('runs npm scripts that exist, and the entry that npm start runs', () => {
    for (const m of docker.matchAll(/npm run (\w+)/g)) expect(pkg.scripts, m[1]).toHaveProperty(m[1]!);
    expect(docker).toContain('npm ci');
    expect(pkg.scripts.start).toBe('node dist/src/cli/iommud.js');
    expect(docker).toContain('CMD ["node", "dist/src/cli/iommud.js"]');
    expect(pkg.scripts.build).toBe('tsc -p tsconfig.json');
    expect(docker).toContain('COPY tsconfig.json');
  });

  it('uses Node 20, a non-root user, a health check on /health and a data volume', () => {
    expect(docker).toMatch(/FROM node:20-bookworm-slim AS runtime/);
    expect(docker).toMatch(/^USER node$/m);
    expect(docker).toContain('/health');
    expect(docker).toContain('VOLUME ["/data"]');
  });

  it('the README quick start is the two commands', () => {
    expect(readme).toContain('npm ci && npm start');
    expect(readme).toContain('npm ci && npm test');
  });
});
