import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_STATUS } from '../../src/errors.js';

const repo = join(import.meta.dirname, '..', '..');
/** The contract this build implements, kept in the repository so a clean clone (CI) checks against it too. */
const contract = readFileSync(join(repo, 'docs', 'API.md'), 'utf8');

/** `| CODE | status | when |` rows of the contract's error table, and the codes its later sections give with a status. */
function contractCodes(md: string): Map<string, number> {
  const codes = new Map<string, number>();
  for (const m of md.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \|/gm)) codes.set(m[1]!, Number(m[2]));
  for (const m of md.matchAll(/(\d{3}) \{"error": \{"code": "([A-Z_]+)"/g)) codes.set(m[2]!, Number(m[1]));
  return codes;
}

describe('the error table (src/errors.ts) is the contract’s', () => {
  it('the same codes with the same statuses as API.md', () => {
    const table = contractCodes(contract);
    expect(table.size).toBeGreaterThanOrEqual(18);
    expect(Object.fromEntries([...table].sort())).toEqual(Object.fromEntries(Object.entries(ERROR_STATUS).sort()));
  });

  it.each(['API.md', 'HARDWARE.md'])('docs/%s is the shared document, unchanged (where the shared copy exists)', (name) => {
    const shared = join(repo, '..', '..', 'shared', name);
    const alt = join(repo, '..', 'shared', name);
    const path = existsSync(shared) ? shared : existsSync(alt) ? alt : null;
    const ours = readFileSync(join(repo, 'docs', name), 'utf8');
    if (path) expect(ours).toBe(readFileSync(path, 'utf8'));
    else expect(ours.length).toBeGreaterThan(0);
  });
});
