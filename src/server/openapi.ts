/**
 * The error responses of every route in the OpenAPI document, derived once from what a route is (Fastify's
 * onRoute hook) rather than written beside each route: which refusals a route can give follows from its method,
 * its path and its inputs, the same way the auth hook, the body parser and the session gate decide them.
 */
import type { FastifyInstance, RouteOptions } from 'fastify';
import { z } from 'zod';
import { ErrorBody } from '../api/schemas.js';

/** Routes that allocate from a bounded pool (page tables, IOVA space, buffer pools): 507 NO_SPACE. */
const NO_SPACE_ROUTES = [/\/domains$/, /\/map$/, /\/batch$/, /\/buffers$/, /\/dma\/map(-sg)?$/, /\/attach$/];

const DESCRIPTIONS: Record<number, string> = {
  400: 'BAD_REQUEST, UNALIGNED, OUT_OF_RANGE: the request is malformed or names impossible values',
  401: 'UNAUTHORIZED: missing or unknown token (an unknown session is 401 too)',
  403: "FORBIDDEN: the token's role is below the route's",
  404: 'NOT_FOUND, NOT_MAPPED: the named object does not exist',
  409: 'a conflict with the current state (ALREADY_MAPPED, DEVICE_BUSY, DOMAIN_ATTACHED, NOT_ATTACHED, PARTIAL_UNMAP, DOMAIN_TYPE, DMA_DEBUG)',
  413: 'PAYLOAD_TOO_LARGE: body or batch over the configured limit',
  415: 'UNSUPPORTED_MEDIA_TYPE: send application/json (or octet-stream where documented)',
  429: 'LIMIT: a quota or the rate limit (Retry-After when waiting helps)',
  503: 'UNAVAILABLE: persistence failed; mutations are refused, reads keep working',
  507: 'NO_SPACE: a pool (page tables, IOVA space, buffers) is exhausted',
};

export function errorStatuses(route: Pick<RouteOptions, 'url' | 'schema'> & { method: string }): number[] {
  const { method, url } = route;
  const schema = (route.schema ?? {}) as Record<string, unknown>;
  const mutation = method !== 'GET' && method !== 'HEAD';
  const inSession = url.startsWith('/v1/sessions/:sid');
  const statuses = new Set<number>();
  if (schema.params || schema.querystring || schema.body || mutation) statuses.add(400);
  if (inSession) [401, 403, 404, 429].forEach((s) => statuses.add(s));
  if (schema.body || method === 'POST' || method === 'PUT' || method === 'PATCH') [413, 415].forEach((s) => statuses.add(s));
  if (mutation && inSession) [409, 503].forEach((s) => statuses.add(s));
  if (url === '/v1/sessions' && method === 'POST') [429, 503].forEach((s) => statuses.add(s));
  if (mutation && NO_SPACE_ROUTES.some((r) => r.test(url))) statuses.add(507);
  return [...statuses].sort((a, b) => a - b);
}

export function installOpenApiResponses(app: FastifyInstance): void {
  const error = (status: number) => ErrorBody.meta({ description: DESCRIPTIONS[status]! });
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (route.schema?.hide || !route.schema) return;
    const schema = route.schema as Record<string, unknown> & { response?: Record<string, unknown>; description?: string };
    if ((route as { websocket?: boolean }).websocket) {
      // A WebSocket route answers its upgrade with 101; its refusals happen before the upgrade, as HTTP errors.
      schema.description = `WebSocket (GET with Upgrade: websocket; ?token= instead of a bearer header). ${schema.description ?? ''}`.trim();
      schema.response = { 101: z.null().meta({ description: 'Switching Protocols: the socket is open' }), ...schema.response };
    }
    const response = (schema.response ??= {});
    for (const status of errorStatuses({ method: String(methods[0]), url: route.url, schema })) response[status] ??= error(status);
  });
}
