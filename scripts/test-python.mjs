#!/usr/bin/env node
/**
 * The Python client's tests (clients/python/tests) and the Python example (examples/python), run with pytest
 * against a daemon the plugin starts from this checkout. Arguments go to pytest (.ci/run adds --junitxml).
 * Without a Python that has pytest and websockets (Debian: python3-pytest, python3-websockets) it says so and
 * skips, unless IOMMUD_REQUIRE_PYTHON=1 or IOMMUD_REQUIRE_TOOLS=1 (CI), where that is a failure.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// Debian's interpreter first: a pyenv or venv python3 on PATH usually lacks Debian's packages.
const python = process.env.IOMMUD_PYTHON ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');
const required = process.env.IOMMUD_REQUIRE_PYTHON === '1' || process.env.IOMMUD_REQUIRE_TOOLS === '1';

const probe = spawnSync(python, ['-c', 'import pytest, websockets'], { stdio: 'ignore' });
if (probe.error || probe.status !== 0) {
  const why = `Python tests SKIPPED: ${python} with pytest and websockets not found (Debian: apt-get install python3-pytest python3-websockets; or set IOMMUD_PYTHON)`;
  if (required) {
    console.error(why.replace('SKIPPED', 'cannot run'));
    process.exit(1);
  }
  console.log(why);
  process.exit(0);
}

const src = join(root, 'clients/python/src');
const env = { ...process.env, PYTHONPATH: process.env.PYTHONPATH ? src + delimiter + process.env.PYTHONPATH : src, PYTHONDONTWRITEBYTECODE: '1' };
const args = ['-m', 'pytest', 'clients/python/tests', 'examples/python', '-p', 'no:cacheprovider', ...process.argv.slice(2)];
console.log(`Python tests: ${python} ${args.join(' ')}`);
const run = spawnSync(python, args, { cwd: root, env, stdio: 'inherit' });
if (run.error) {
  console.error(run.error.message);
  process.exit(1);
}
// pytest's 5 means it collected nothing: a test suite that vanished is a failure, not a pass.
if (run.status === 5) console.error('pytest collected no tests');
process.exit(run.status === 0 ? 0 : 1);
