#!/usr/bin/env node
/**
 * iommud: start the daemon. In memory, msm8x60 profile, 127.0.0.1:8080 unless PORT/HOST or --port/--host say
 * otherwise; --demo also creates a session and prints its id and owner token.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_NODE_ID, isNodeId } from '../cluster/node.js';
import { MSM8X60 } from '../hw/profile.js';
import { build } from '../server/app.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string' },
    demo: { type: 'boolean', default: false },
    'data-dir': { type: 'string' },
    'compact-every': { type: 'string' },
    'rate-limit': { type: 'string' },
    'node-id': { type: 'string' },
    'max-sessions': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help) {
  process.stdout.write('usage: iommud [--port N] [--host ADDR] [--data-dir DIR] [--compact-every RECORDS] [--rate-limit REQ_PER_S] [--node-id NAME] [--max-sessions N] [--demo]\n  env: PORT, HOST, IOMMUD_DATA_DIR, IOMMUD_COMPACT_EVERY, IOMMUD_RATE_LIMIT, IOMMUD_NODE_ID, IOMMUD_MAX_SESSIONS, LOG_LEVEL\n');
  process.exit(0);
}

const port = Number(values.port ?? process.env.PORT ?? 8080);
const host = values.host ?? process.env.HOST ?? '127.0.0.1';
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`iommud: bad port ${values.port ?? process.env.PORT}\n`);
  process.exit(2);
}

const nodeId = values['node-id'] ?? process.env.IOMMUD_NODE_ID ?? DEFAULT_NODE_ID;
if (!isNodeId(nodeId)) {
  process.stderr.write(`iommud: bad node id ${JSON.stringify(nodeId)} (1-16 lower-case letters and digits)\n`);
  process.exit(2);
}

const maxSessionsArg = values['max-sessions'] ?? process.env.IOMMUD_MAX_SESSIONS;
const maxSessions = maxSessionsArg === undefined ? undefined : Number(maxSessionsArg);
if (maxSessions !== undefined && (!Number.isSafeInteger(maxSessions) || maxSessions < 1)) {
  process.stderr.write(`iommud: bad --max-sessions ${JSON.stringify(maxSessionsArg)} (a whole number of at least 1)\n`);
  process.exit(2);
}

const level = process.env.LOG_LEVEL ?? 'info';
const dataDir = values['data-dir'] ?? process.env.IOMMUD_DATA_DIR ?? null;
const compactEvery = values['compact-every'] ?? process.env.IOMMUD_COMPACT_EVERY;
const rate = values['rate-limit'] ?? process.env.IOMMUD_RATE_LIMIT;
const app = await build({
  dataDir,
  nodeId,
  limits: { ...(rate !== undefined ? { requestsPerSecond: Number(rate) } : {}), ...(maxSessions !== undefined ? { maxSessions } : {}) },
  ...(compactEvery !== undefined ? { compactEvery: Number(compactEvery) } : {}),
  logger: {
    level,
    // Never log tokens: drop the query string (?token=) and the Authorization header from request logs.
    serializers: {
      req: (req: { method: string; url: string; id: string }) => ({ id: req.id, method: req.method, url: req.url.split('?')[0] }),
    },
    ...(process.stdout.isTTY ? { transport: { target: 'pino-pretty', options: { translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } } } : {}),
  },
});

let closing = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (closing) return;
    closing = true;
    app.log.info({ signal: sig }, 'shutting down');
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}

await app.listen({ port, host });
if (values.demo) {
  // With a data dir the demo session of an earlier run was restored: reuse it (with a fresh owner token, since
  // only token digests are kept) rather than adding one more demo session at every restart.
  const restored = [...app.registry.sessions.values()].find((s) => s.name === 'demo');
  if (restored) {
    const { token, durable } = restored.mintToken('owner', 'owner');
    await durable;
    process.stdout.write(`demo session: ${restored.id} (restored)\nowner token: ${token}\n`);
  } else {
    const { session, token } = await app.registry.create({ name: 'demo', profile: MSM8X60 });
    process.stdout.write(`demo session: ${session.id}\nowner token: ${token}\n`);
  }
}
