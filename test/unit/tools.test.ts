import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { systemTool } from '../support/tools.js';

const saved = { PATH: process.env.PATH, IOMMUD_REQUIRE_TOOLS: process.env.IOMMUD_REQUIRE_TOOLS };
afterEach(() => {
  process.env.PATH = saved.PATH;
  if (saved.IOMMUD_REQUIRE_TOOLS === undefined) delete process.env.IOMMUD_REQUIRE_TOOLS;
  else process.env.IOMMUD_REQUIRE_TOOLS = saved.IOMMUD_REQUIRE_TOOLS;
  vi.restoreAllMocks();
});

/** Issue 12: `npm test` without Chromium skips the browser tests and says so; CI makes a missing browser a failure. */
describe('system tools of the tests', () => {
  it('a missing tool is a skip with the apt-get line to fix it', () => {
    process.env.PATH = mkdtempSync(join(tmpdir(), 'no-tools-'));
    delete process.env.IOMMUD_REQUIRE_TOOLS;
    const written: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => (written.push(String(s)), true));
    expect(systemTool('chromium')).toBeNull();
    expect(written).toEqual(['skipped: no chromium (apt-get install chromium)\n']);
  });

  it('with IOMMUD_REQUIRE_TOOLS=1 (what .ci/run sets) a missing tool fails instead', () => {
    process.env.PATH = mkdtempSync(join(tmpdir(), 'no-tools-'));
    process.env.IOMMUD_REQUIRE_TOOLS = '1';
    expect(() => systemTool('chromium')).toThrow('skipped: no chromium (apt-get install chromium): IOMMUD_REQUIRE_TOOLS=1 makes this a failure');
    expect(readFileSync(new URL('../../.ci/run', import.meta.url), 'utf8')).toMatch(/^export IOMMUD_REQUIRE_TOOLS=1\b/m);
  });

  it('a tool on PATH is found; the browser tests skip on its absence alone', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tools-'));
    writeFileSync(join(dir, 'chromium'), '#!/bin/sh\n');
    chmodSync(join(dir, 'chromium'), 0o755);
    process.env.PATH = dir;
    expect(systemTool('chromium')).toBe(join(dir, 'chromium'));
    const dashboard = readFileSync(new URL('../web/dashboard.test.ts', import.meta.url), 'utf8');
    expect(dashboard).toContain("const chromiumPath = systemTool('chromium');");
    expect(dashboard).toContain('describe.skipIf(!chromiumPath)(');
  });
});
