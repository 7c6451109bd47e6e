// Writes docs/cli.md: iommuctl's commands beside the API routes they call, from the command tree itself.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const doc = execFileSync(process.execPath, ['--import', 'tsx', 'src/cli/iommuctl.ts', 'routes', '--markdown'], { cwd: root, encoding: 'utf8', env: { ...process.env, IOMMUD_CONFIG: '/nonexistent/iommud-config.json' } });
writeFileSync(new URL('../docs/cli.md', import.meta.url), doc);
console.log(`wrote docs/cli.md (${doc.trim().split('\n').length - 8} rows)`);
