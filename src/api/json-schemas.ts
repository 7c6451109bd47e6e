import { z } from 'zod';
import { SCHEMAS } from './schemas.js';

/** JSON Schema (draft 2020-12) for every request/response body, as `npm run schemas` writes them. */
export function jsonSchemas(): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(SCHEMAS)) {
    // Request bodies are described as clients send them (before transforms), responses as the server sends them.
    const io = /Body$|Topology/.test(name) ? 'input' : 'output';
    out[name] = z.toJSONSchema(schema, { io, unrepresentable: 'any' });
  }
  return out;
}
