import type { FastifyInstance, FastifyRequest, onRequestHookHandler } from 'fastify';
import { refusal } from '../errors.js';
import { sameText, Session, type Role, type TokenInfo } from '../session/session.js';

/** The least role a request needs by its method when its route names none: GET and HEAD read. */
function methodRole(method: string): Role {
  return method === 'GET' || method === 'HEAD' ? 'observer' : 'operator';
}

/**
 * The last Authorization header read and its token: a client sends the same header on every request. The header
 * holds another client's valid token, so it is compared in time that depends on its length only (as
 * Session.authenticate compares tokens): `===` stops at the first differing character and would time a guess.
 */
let lastHeader = '';
let lastToken: string | null = null;
/** Whether the token tokenOf() gave last came from an Authorization header (then lastHeader: the memo below may answer for it). */
let fromHeader = false;
/**
 * What the last header's token authenticated as, in which session and at which state of its token table: the same
 * header (compared as above) in the same session, its tokens unchanged, authenticates as the same token again.
 * Held weakly: a deleted session is not kept alive by the last request that reached it.
 */
let authSession: WeakRef<Session> | null = null;
let authGen = -1;
let authInfo: TokenInfo | null = null;

function tokenOf(req: FastifyRequest): string | null {
  const h = req.headers.authorization;
  fromHeader = false;
  if (h) {
    fromHeader = true;
    if (sameText(h, lastHeader)) return lastToken;
    const m = /^Bearer\s+(\S+)$/i.exec(h);
    lastHeader = h;
    lastToken = m ? m[1]! : null;
    authSession = null;
    return lastToken;
  }
  // Browsers cannot set headers on a WebSocket: ?token= is accepted there (API.md), and only there: a real upgrade
  // (the WebSocket plugin saw it) of a WebSocket route, not any request that carries an Upgrade header.
  if (!req.ws || !req.routeOptions.config.websocket) return null;
  const q = (req.query as Record<string, unknown> | undefined)?.token;
  return typeof q === 'string' ? q : null;
}

/** A token bucket per session: `rate` requests per second, bursts up to one second's worth. */
class RateLimiter {
  private readonly buckets = new WeakMap<Session, { tokens: number; at: number }>();
  constructor(private readonly rate: number) {}

  /** Seconds to wait before the next request is allowed (0: allowed now, and counted). */
  take(s: Session): number {
    const now = performance.now() / 1000;
    const b = this.buckets.get(s) ?? { tokens: this.rate, at: now };
    b.tokens = Math.min(this.rate, b.tokens + (now - b.at) * this.rate);
    b.at = now;
    this.buckets.set(s, b);
    if (b.tokens < 1) return (1 - b.tokens) / this.rate;
    b.tokens -= 1;
    return 0;
  }
}

/**
 * Auth for every /v1/sessions/:sid route, before validation as API.md orders it: 401 (missing or unknown token,
 * unknown session: ids cannot be probed), then 403 (role), then 404 for resources inside the session.
 */
export function installSessionAuth(app: FastifyInstance, requestsPerSecond: number): void {
  const limiter = requestsPerSecond > 0 ? new RateLimiter(requestsPerSecond) : null;
  // Declared, so every request object of this scope is built with the two fields the hook sets (one shape): set
  // on an undeclared request they add properties per request, and Fastify's code then meets two shapes of it.
  app.decorateRequest('iommuSession', null as unknown as Session);
  app.decorateRequest('auth', null as unknown as TokenInfo);
  const hooks = new WeakSet<onRequestHookHandler>();
  /** The auth hook of a route that needs `fixed` (null: by the request's method). Callback-style: no promise. */
  const authHook = (fixed: Role | null): onRequestHookHandler => {
    const hook: onRequestHookHandler = (req, reply, done) => {
      const sid = (req.params as { sid?: string }).sid;
      const token = tokenOf(req);
      const session = sid ? app.registry.get(sid) : undefined;
      let auth: TokenInfo | null = null;
      if (token && session) {
        if (fromHeader && session.tokenGen === authGen && authSession?.deref() === session) auth = authInfo;
        else {
          auth = session.authenticate(token);
          if (auth && fromHeader) {
            authSession = new WeakRef(session);
            authGen = session.tokenGen;
            authInfo = auth;
          }
        }
      }
      if (!session || !auth) return done(refusal(token ? 'unknownToken' : 'missingToken'));
      const needed: Role = fixed ?? methodRole(req.method);
      if (!Session.allows(auth.role, needed)) {
        return done(refusal('roleTooLow', { role: auth.role, needed }));
      }
      const wait = limiter?.take(session) ?? 0;
      if (wait > 0) {
        reply.header('retry-after', String(Math.ceil(wait)));
        return done(refusal('rateLimited', { perSecond: requestsPerSecond, retryAfterMs: Math.ceil(wait * 1000) }));
      }
      req.iommuSession = session;
      req.auth = auth;
      done();
    };
    hooks.add(hook);
    return hook;
  };
  // The role a route needs is known when it is declared: each route gets its own hook, first of its onRequest
  // hooks (this scope has no other), so no request reads it back through req.routeOptions (a getter that builds
  // an object per call). Fastify's HEAD twin of a GET route comes here too, with its own method.
  app.addHook('onRoute', (route) => {
    const methods = [route.method].flat();
    const roles = new Set(methods.map(methodRole));
    const fixed = route.config?.role ?? (roles.size === 1 ? [...roles][0]! : null);
    const own = [route.onRequest ?? []].flat().filter((h) => !hooks.has(h));
    route.onRequest = [authHook(fixed), ...own];
  });
  app.addHook('preValidation', (req, _reply, done) => {
    const p = req.params as Record<string, string | undefined>;
    const s = req.iommuSession;
    try {
      if (p.did !== undefined) s.iommu.domain(p.did);
      if (p.device !== undefined) s.soc.device(p.device);
      if (p.smmu !== undefined) {
        const smmu = s.soc.smmu(p.smmu);
        if (p.ctx !== undefined) s.soc.context(smmu, p.ctx);
      }
    } catch (e) {
      return done(e as Error);
    }
    done();
  });
}
