import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { fail } from '../../errors.js';
import * as S from '../../api/schemas.js';
import { parseTrace } from '../../session/session.js';
import { profilesView, resolveProfile } from '../../session/views.js';
import { VERSION } from '../version.js';

const started = Date.now();

/** Routes outside a session: profiles, session creation, health, version. */
export const publicRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get('/health', { schema: { summary: 'Liveness: status, sessions, uptime', tags: ['operations'], response: { 200: S.HealthResponse } } }, async () => ({
    status: 'ok' as const,
    node: app.registry.nodeId,
    sessions: app.registry.sessions.size,
    uptime: Math.round((Date.now() - started) / 1000),
  }));

  app.get('/v1/version', { schema: { summary: 'Daemon version, API version and capabilities', tags: ['operations'], response: { 200: S.VersionResponse } } }, async () => ({
    name: 'iommud',
    version: VERSION,
    api: 'v1' as const,
    node: app.registry.nodeId,
    capabilities: ['iommu-api', 'mmio', 'dma', 'memory', 'events', 'stale-tlb-detector', 'fault-injection', 'stall', 'masters', 'trace', 'stream', 'cluster', 'families', 'cpu-cache', 'bounce', 'event-batches', ...(app.registry.opts.dataDir ? ['persistence'] : [])],
  }));

  app.get('/v1/profiles', { schema: { summary: 'Simulated SoCs: SMMUs, contexts, MIDs, memory map', tags: ['profiles'], response: { 200: S.ProfilesResponse } } }, async () => profilesView());

  app.post('/v1/sessions', { schema: { summary: 'Create a session (profile, inline topology or trace replay); returns the owner token', tags: ['sessions'], body: S.CreateSessionBody, response: { 201: S.CreateSessionResponse } } }, async (req, reply) => {
    const body = req.body ?? {};
    const trace = body.trace !== undefined ? parseTrace(body.trace) : null;
    if (body.persist === true && !app.registry.opts.dataDir) {
      fail('persistNeedsDataDir');
    }
    const h = trace?.header.session;
    const profile = resolveProfile(body.profile ?? h?.profile ?? 'msm8x60');
    const lim = app.iommudOptions.limits;
    const { session, token } = await app.registry.create({
      name: body.name ?? h?.name ?? 'session',
      profile,
      tlbEntries: body.tlbEntries ?? h?.tlbEntries,
      tlbPolicy: body.tlbPolicy ?? h?.tlbPolicy,
      stallTimeoutMs: body.stallTimeoutMs ?? h?.stallTimeoutMs,
      cpuCache: body.cpuCache ?? h?.cpuCache,
      bounce: body.bounce ?? h?.bounce,
      eventRetain: lim.eventRetain,
      limits: { maxDomains: lim.maxDomainsPerSession, maxMappedPages: lim.maxMappedPagesPerSession, maxBatchOps: lim.maxBatchOps },
      ...(trace ? { trace: trace.records } : {}),
      ...(body.persist !== undefined ? { persist: body.persist } : {}),
    });
    reply.code(201);
    return { id: session.id, name: session.name, profile: profile.name, token, createdAt: session.createdAt };
  });
};
