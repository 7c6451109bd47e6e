import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { IommuError } from '../../errors.js';
import { PROFILES, validateProfile, type Profile } from '../../hw/profile.js';
import * as S from '../../api/schemas.js';
import { profileView } from '../views.js';
import { VERSION } from '../version.js';

const started = Date.now();

/** Routes outside a session: profiles, session creation, health, version. */
export const publicRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get('/health', { schema: { tags: ['operations'], response: { 200: S.HealthResponse } } }, async () => ({
    status: 'ok' as const,
    sessions: app.registry.sessions.size,
    uptime: Math.round((Date.now() - started) / 1000),
  }));

  app.get('/v1/version', { schema: { tags: ['operations'], response: { 200: S.VersionResponse } } }, async () => ({
    name: 'iommud',
    version: VERSION,
    api: 'v1' as const,
    capabilities: ['iommu-api', 'mmio', 'events', 'stale-tlb-detector', 'fault-injection', 'stall', 'masters'],
  }));

  app.get('/v1/profiles', { schema: { tags: ['profiles'], response: { 200: S.ProfilesResponse } } }, async () => Object.values(PROFILES).map(profileView));

  app.post('/v1/sessions', { schema: { tags: ['sessions'], body: S.CreateSessionBody, response: { 201: S.CreateSessionResponse } } }, async (req, reply) => {
    const body = req.body ?? {};
    let profile: Profile;
    if (body.profile === undefined || typeof body.profile === 'string') {
      const name = body.profile ?? 'msm8x60';
      const p = PROFILES[name];
      if (!p) throw new IommuError('BAD_REQUEST', `unknown profile ${name}`, { profile: name, known: Object.keys(PROFILES) });
      profile = p;
    } else {
      profile = validateProfile(body.profile as Profile);
    }
    const lim = app.iommudOptions.limits;
    const { session, token } = await app.registry.create({
      name: body.name ?? 'session',
      profile,
      tlbEntries: body.tlbEntries,
      tlbPolicy: body.tlbPolicy,
      stallTimeoutMs: body.stallTimeoutMs,
      eventRetain: lim.eventRetain,
      limits: { maxDomains: lim.maxDomainsPerSession, maxMappedPages: lim.maxMappedPagesPerSession },
    });
    reply.code(201);
    return { id: session.id, name: session.name, profile: profile.name, token, createdAt: session.createdAt };
  });
};
