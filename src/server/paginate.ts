/**
 * Cursor pagination for lists that can be long (mappings, buffers): the body stays the contract's array, and when
 * more items follow, `Link: <same route, from=cursor>; rel="next"` says where (RFC 8288, as GitHub's API does).
 * A page is never cut silently.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { hex } from '../errors.js';

export const DEFAULT_PAGE = 1000;
export const MAX_PAGE = 100_000;

/** Takes up to `limit` of `items` (fetched as limit + 1); sets the next link from the cursor of the last one kept. */
export function page<T>(req: FastifyRequest, reply: FastifyReply, items: T[], limit: number, cursorAfter: (last: T) => number): T[] {
  if (items.length <= limit) return items;
  const kept = items.slice(0, limit);
  const next = cursorAfter(kept[kept.length - 1]!);
  const [path, qs = ''] = req.url.split('?');
  const params = new URLSearchParams(qs);
  params.delete('token');
  params.set('from', hex(next));
  params.set('limit', String(limit));
  reply.header('link', `<${path}?${params.toString()}>; rel="next"`);
  return kept;
}

export const pageLimit = (limit: number | undefined): number => Math.min(Math.max(limit ?? DEFAULT_PAGE, 1), MAX_PAGE);
