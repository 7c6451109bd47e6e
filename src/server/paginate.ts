/**
 * Cursor pagination for lists that can be long (mappings, buffers): the body stays the contract's array, and when
 * more items follow, `Link: <same route, from=cursor>; rel="next"` says where (RFC 8288, as GitHub's API does).
 * A page is never cut silently.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { hex } from '../errors.js';

export const DEFAULT_PAGE = 1000;
export const MAX_PAGE = 100_000;

/** A page a session already cut (its items and the cursor after them): sets the next link when more follow. */
export function page<T>(req: FastifyRequest, reply: FastifyReply, p: { items: T[]; next?: number }, limit: number): T[] {
  if (p.next === undefined) return p.items;
  const [path, qs = ''] = req.url.split('?');
  const params = new URLSearchParams(qs);
  params.delete('token');
  params.set('from', hex(p.next));
  params.set('limit', String(limit));
  reply.header('link', `<${path}?${params.toString()}>; rel="next"`);
  return p.items;
}

export const pageLimit = (limit: number | undefined): number => Math.min(Math.max(limit ?? DEFAULT_PAGE, 1), MAX_PAGE);
