import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('../../', import.meta.url).pathname;

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/**
 * The built entry of a CLI (what the package's bin runs), rebuilt with `npm run build` when src/ is newer: the CLI
 * tests run the binary users run, not the TypeScript through tsx.
 */
export function builtCli(name: 'iommuctl' | 'iommud'): string {
  const entry = join(root, 'dist/src/cli', `${name}.js`);
  let built = 0;
  try {
    built = statSync(entry).mtimeMs;
  } catch {
    built = 0;
  }
  if (built < newest(join(root, 'src'))) execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
  return entry;
}
