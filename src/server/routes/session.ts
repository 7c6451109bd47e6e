import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import * as S from '../../api/schemas.js';
import { noncoherentView } from './cache.js';

/** The session itself and its tokens. */
export const sessionRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get('/', { schema: { summary: 'The session: revision, domains, subscribers, pools', tags: ['sessions'], response: { 200: S.SessionResponse } } }, async (req) => {
    const s = req.iommuSession;
    return {
      id: s.id,
      name: s.name,
      profile: s.profile.name,
      createdAt: s.createdAt,
      revision: s.revision,
      tlbEntries: s.tlbEntries,
      tlbPolicy: s.tlbPolicy,
      domains: s.iommu.domains.size,
      subscribers: s.bus.subscriberCount,
      lastSeq: s.bus.lastSeq,
      pools: s.pools.usage().map((p) => ({ name: p.name, used: p.used, free: p.free })),
      ...noncoherentView(s),
    };
  });

  app.delete('/', { config: { role: 'owner' }, schema: { summary: 'Delete the session (owner)', tags: ['sessions'], response: { 204: S.NoContent } } }, async (req, reply) => {
    await app.registry.delete(req.iommuSession.id);
    reply.code(204).send(null);
  });

  app.post('/tokens', { config: { role: 'owner' }, schema: { summary: 'Mint a token with a role and a label (owner)', tags: ['sessions'], body: S.TokenBody, response: { 201: S.TokenResponse } } }, async (req, reply) => {
    const label = req.body.label ?? null;
    const { token, durable } = req.iommuSession.mintToken(req.body.role, label);
    await durable;
    reply.code(201);
    return { token, role: req.body.role, label };
  });


  app.get('/trace', { schema: { summary: 'The session as JSON lines: header, then one command per line', tags: ['sessions'] } }, async (req, reply) => {
    reply.type('application/x-ndjson');
    return (await req.iommuSession.traceLines()).join('\n') + '\n';
  });
};
