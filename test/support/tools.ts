import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * A system tool a test file needs (chromium, haproxy, python3 with pytest): its path, or null with a plain notice
 * when it is missing, so `npm test` on a bare machine passes the rest and says what it skipped. `.ci/run` sets
 * IOMMUD_REQUIRE_TOOLS=1 after installing them: there a missing tool is a failure, never a silent skip.
 */
export function systemTool(name: string, aptPackage: string = name): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter).filter(Boolean)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not in this directory
    }
  }
  const notice = `skipped: no ${name} (apt-get install ${aptPackage})`;
  if (process.env.IOMMUD_REQUIRE_TOOLS === '1') throw new Error(`${notice}: IOMMUD_REQUIRE_TOOLS=1 makes this a failure`);
  process.stderr.write(`${notice}\n`);
  return null;
}
