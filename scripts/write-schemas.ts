// Writes schemas/<Name>.json from the zod schemas (the single source of truth).
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { jsonSchemas } from '../src/api/json-schemas.js';

const dir = new URL('../schemas/', import.meta.url);
mkdirSync(dir, { recursive: true });
for (const f of readdirSync(dir)) if (f.endsWith('.json')) rmSync(new URL(f, dir));
const all = jsonSchemas();
for (const [name, schema] of Object.entries(all)) writeFileSync(new URL(`${name}.json`, dir), JSON.stringify(schema, null, 2) + '\n');
console.log(`wrote ${Object.keys(all).length} schemas to schemas/`);
