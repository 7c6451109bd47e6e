/**
 * build(): the Fastify app (tests inject into it; the CLI listens with it). A thin shell: validate with zod,
 * call the session, shape the reply.
 */
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import fastifyWebsocket from '@fastify/websocket';
import Fastify, { type FastifySchemaCompiler, type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { refusal } from '../errors.js';
import { DEFAULT_MAX_SESSIONS, SessionRegistry } from '../session/session.js';
import { installSessionAuth } from './auth.js';
import type { Limits, ResolvedOptions } from './context.js';
import { clientErrorHandler, installErrorHandler } from './errors.js';
import { eventRoutes } from './events.js';
import { installDashboard } from './dashboard.js';
import { installMetrics } from './metrics.js';
import { installOpenApiResponses } from './openapi.js';
import { replyWriter } from './replies.js';
import { streamRoutes } from './stream.js';
import { deviceRoutes } from './routes/devices.js';
import { dmaRoutes } from './routes/dma.js';
import { cacheRoutes } from './routes/cache.js';
import { memoryRoutes } from './routes/memory.js';
import { domainRoutes } from './routes/domains.js';
import { hardwareRoutes } from './routes/hardware.js';
import { publicRoutes } from './routes/public.js';
import { sessionRoutes } from './routes/session.js';
import { VERSION } from './version.js';

export interface BuildOptions {
  logger?: FastifyServerOptions['logger'];
  limits?: Partial<Limits>;
  wsHighWater?: number;
  /** Check every response against its zod schema (tests turn this on; the daemon serializes directly). */
  validateResponses?: boolean;
  /** An existing registry (the CLI's demo session, benchmarks). */
  registry?: SessionRegistry;
  /** Journal directory: every acknowledged mutation survives a restart. Null or absent: in memory only. */
  dataDir?: string | null;
  /** Journal records after which a session is compacted into a snapshot (default 100,000). */
  compactEvery?: number;
  /** Cluster node id: the prefix of every session id this daemon creates (default `s`). */
  nodeId?: string;
  /** Bytes of in-memory trace per session without a journal (--trace-memory). */
  traceMemory?: number;
  /** Bytes of emulated RAM per session and for the whole daemon (--max-ram-per-session, --max-ram). */
  maxRamPerSession?: number;
  maxRam?: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxSessions: DEFAULT_MAX_SESSIONS,
  maxDomainsPerSession: 1024,
  maxMappedPagesPerSession: 4 * 1024 * 1024,
  maxSubscribersPerSession: 64,
  maxBatchOps: 65536,
  bodyLimit: 8 * 1024 * 1024,
  eventRetain: 10_000,
  requestsPerSecond: 0,
};

/**
 * Each route's params, query and body are checked by zod's compiled form of the route's schema (z.compile, once
 * per route at startup): generated code for the inputs it models, and zod's own parser for everything else, so a
 * refusal carries exactly the issues the plain schema gives. The route keeps the plain schema (OpenAPI, schemas/).
 */
export const compiledValidatorCompiler: FastifySchemaCompiler<z.ZodType> = (route) => {
  const compiled = z.compile(route.schema);
  const refuse = validatorCompiler({ ...route, schema: compiled });
  // An accepted input goes through the compiled schema's own safeParse: the generated code alone, without the
  // parse context, payload and issue list zod's generic safeParse makes per call. What it refuses, the type
  // provider's validator parses again, for the same issues as before.
  return (data) => {
    const r = compiled.safeParse(data);
    return r.success ? { value: r.data } : refuse(data);
  };
};

type BodyParser = (req: FastifyRequest, body: string, done: (err: Error | null, body?: unknown) => void) => void;

/**
 * The JSON body parser: UTF-8 only, an empty body is no body, and otherwise Fastify's own parser (secure-json-parse,
 * `__proto__` and `constructor.prototype` refused, a leading BOM dropped) decides, with its errors. A body in which
 * secure-json-parse could find nothing to refuse is parsed by JSON.parse directly: its poisoning checks match only
 * the key text `"__proto__"` or `"constructor"`, each letter either literal or a `\u` escape, and it strips only a
 * BOM, so a body with no BOM, no `\u`, no `proto` and no `constructor` that JSON.parse takes is what it returns
 * (test/server/json-body.test.ts checks the two agree). Anything else, a parse error included, goes to Fastify's.
 */
export function jsonBodyParser(fastifyJson: BodyParser): BodyParser {
  return (req, body, done) => {
    const ct = req.headers['content-type'];
    if (ct !== 'application/json') {
      // The body is read as UTF-8: a JSON body declared in another charset would be misread, so it is refused.
      const charset = /;\s*charset\s*=\s*"?([^";\s]*)/i.exec(ct ?? '')?.[1];
      if (charset !== undefined && !/^utf-?8$/i.test(charset)) return done(refusal('charsetRefused', { charset }), undefined);
    }
    if (body.length === 0) return done(null, undefined);
    if (body.charCodeAt(0) !== 0xfeff && body.indexOf('\\u') === -1 && body.indexOf('proto') === -1 && body.indexOf('constructor') === -1) {
      let value: unknown;
      try {
        value = JSON.parse(body);
      } catch {
        return fastifyJson(req, body, done);
      }
      return done(null, value);
    }
    fastifyJson(req, body, done);
  };
}

export async function build(opts: BuildOptions = {}): Promise<FastifyInstance> {
  const limits: Limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: limits.bodyLimit,
    clientErrorHandler,
    genReqId: (() => {
      let n = 0;
      return () => `req-${(++n).toString(36)}`;
    })(),
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(compiledValidatorCompiler);
  // The daemon writes replies without checking them: JSON.stringify, or the writer of the hottest replies (replies.ts).
  if (opts.validateResponses) app.setSerializerCompiler(serializerCompiler);
  else app.setSerializerCompiler(({ schema }) => replyWriter(schema));

  // A body-less POST with Content-Type: application/json is fine on routes that take no body (API.md).
  // JSON only: Fastify's default text/plain parser would let a non-JSON body reach validation as a string.
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser('application/json', { parseAs: 'string' }, jsonBodyParser(app.getDefaultJsonParser('error', 'error')));

  const resolved: ResolvedOptions = { limits, wsHighWater: opts.wsHighWater ?? 1024 * 1024 };
  app.decorate('iommudOptions', resolved);
  const registry =
    opts.registry ??
    new SessionRegistry({
      maxSessions: limits.maxSessions,
      dataDir: opts.dataDir ?? null,
      ...(opts.nodeId !== undefined ? { nodeId: opts.nodeId } : {}),
      ...(opts.compactEvery !== undefined ? { compactEvery: opts.compactEvery } : {}),
      ...(opts.traceMemory !== undefined ? { traceMemory: opts.traceMemory } : {}),
      ...(opts.maxRamPerSession !== undefined ? { maxRamPerSession: opts.maxRamPerSession } : {}),
      ...(opts.maxRam !== undefined ? { maxRam: opts.maxRam } : {}),
    });
  app.decorate('registry', registry);
  if (!opts.registry && opts.dataDir) {
    const n = await registry.restore((msg, extra) => app.log.warn(extra ?? {}, msg));
    app.log.info({ sessions: n, dataDir: opts.dataDir }, 'restored sessions from journals');
  }
  installErrorHandler(app);

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'iommud', version: VERSION, description: 'Emulated MSM SMMUs behind the Linux IOMMU API' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });
  await app.register(fastifyWebsocket, {
    // Stream frames of up to 65536 items with data; event-socket messages are small.
    options: { maxPayload: 16 * 1024 * 1024 },
    // On shutdown, tell every subscriber to reconnect (1012 Service Restart) and resume with `since`.
    preClose(done) {
      for (const client of this.websocketServer.clients) client.close(1012, 'iommud restarting: reconnect with since');
      this.server.close();
      done();
    },
  });
  // @fastify/websocket hides its routes from the OpenAPI document; the event stream belongs in it.
  app.addHook('onRoute', (route) => {
    if (route.websocket && route.schema) route.schema.hide = false;
    if (route.websocket) route.config = { ...route.config, websocket: true };
  });
  installOpenApiResponses(app);

  const metrics = installMetrics(app, app.registry);
  await installDashboard(app);
  await app.register(publicRoutes);
  await app.register(
    async (scope) => {
      installSessionAuth(scope, limits.requestsPerSecond);
      await scope.register(sessionRoutes);
      await scope.register(hardwareRoutes);
      await scope.register(domainRoutes);
      await scope.register(deviceRoutes);
      await scope.register(memoryRoutes);
      await scope.register(dmaRoutes);
      await scope.register(cacheRoutes);
      await scope.register(eventRoutes(metrics));
      await scope.register(streamRoutes);
    },
    { prefix: '/v1/sessions/:sid' },
  );
  app.addHook('onClose', async () => app.registry.closeAll());
  return app;
}
