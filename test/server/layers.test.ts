/**
 * The server is a thin HTTP shell (ARCHITECTURE.md): it talks to sessions, whose read methods (src/session/views.ts)
 * shape what the emulator layers hold. No module under src/server may import those layers, even for a type.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');
const BELOW_SESSION = ['hw', 'pgtable', 'iommu', 'dma', 'memory'];

function modules(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? modules(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Every module specifier of a file: static imports and re-exports (type-only too) and dynamic import(). */
function specifiers(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(/^\s*(?:import|export)\b[^'"]*?\bfrom\s*['"]([^'"]+)['"]/gms)) out.push(m[1]!);
  for (const m of source.matchAll(/^\s*import\s*['"]([^'"]+)['"]/gm)) out.push(m[1]!);
  for (const m of source.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push(m[1]!);
  return out;
}

/** The src/ folder a relative specifier of `file` lands in (null: a package, or outside src/). */
function layerOf(file: string, spec: string): string | null {
  if (!spec.startsWith('.')) return null;
  const rel = relative(SRC, resolve(dirname(file), spec));
  return rel.startsWith('..') ? null : rel.split(/[\\/]/)[0]!;
}

describe('layers', () => {
  it('the import scan sees every form of import', () => {
    const src = [
      "import type { Domain } from '../iommu/domain.js';",
      "import {\n  walk,\n  WalkResult,\n} from '../pgtable/v7s.js';",
      "export { hex } from '../errors.js';",
      "export type * from '../hw/family.js';",
      "import '@fastify/websocket';",
      "const m = await import('../dma/dma.js');",
    ].join('\n');
    expect(specifiers(src)).toEqual(['../iommu/domain.js', '../pgtable/v7s.js', '../errors.js', '../hw/family.js', '@fastify/websocket', '../dma/dma.js']);
    expect(BELOW_SESSION.map((l) => layerOf(join(SRC, 'server/routes/x.ts'), `../../${l}/a.js`))).toEqual(BELOW_SESSION);
  });

  it('no module under src/server imports hw, pgtable, iommu, dma or memory', () => {
    const files = modules(join(SRC, 'server'));
    expect(files.length).toBeGreaterThan(10);
    const offending = files.flatMap((f) =>
      specifiers(readFileSync(f, 'utf8'))
        .filter((s) => BELOW_SESSION.includes(layerOf(f, s) ?? ''))
        .map((s) => `${relative(SRC, f)} imports ${s}`),
    );
    expect(offending).toEqual([]);
  });
});
