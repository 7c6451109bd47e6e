import type { FastifyInstance, FastifyRequest } from 'fastify';
import { IommuError } from '../errors.js';
import { Session, type Role } from '../session/session.js';

function tokenOf(req: FastifyRequest): string | null {
  const h = req.headers.authorization;
  if (h) {
    const m = /^Bearer\s+(\S+)$/i.exec(h);
    return m ? m[1]! : null;
  }
  // WebSocket clients cannot always set headers: ?token= is accepted there (API.md).
  const q = (req.query as Record<string, unknown> | undefined)?.token;
  return typeof q === 'string' && req.headers.upgrade ? q : null;
}

/**
 * Auth for every /v1/sessions/:sid route, before validation as API.md orders it: 401 (missing or unknown token,
 * unknown session: ids cannot be probed), then 403 (role), then 404 for resources inside the session.
 */
export function installSessionAuth(app: FastifyInstance, beforeValidation?: (req: FastifyRequest) => void): void {
  // Callback-style hooks: no promise per request on the hottest path of every session route.
  app.addHook('onRequest', (req, _reply, done) => {
    const sid = (req.params as { sid?: string }).sid;
    const token = tokenOf(req);
    const session = sid ? app.registry.get(sid) : undefined;
    const auth = token && session ? session.authenticate(token) : null;
    if (!session || !auth) return done(new IommuError('UNAUTHORIZED', token ? 'unknown token for this session' : 'missing bearer token'));
    const needed: Role = req.routeOptions.config.role ?? (req.method === 'GET' ? 'observer' : 'operator');
    if (!Session.allows(auth.role, needed)) {
      return done(new IommuError('FORBIDDEN', `this needs the ${needed} role; the token is ${auth.role}`, { role: auth.role, needed }));
    }
    req.iommuSession = session;
    req.auth = auth;
    done();
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
      beforeValidation?.(req);
    } catch (e) {
      return done(e as Error);
    }
    done();
  });
}
