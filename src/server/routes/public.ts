import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { IommuError } from '../../errors.js';
import { PROFILES, validateProfile, type Profile } from '../../hw/profile.js';
import * as S from '../../api/schemas.js';
import { TRACE_FORMAT, TRACE_VERSION, type TraceHeader } from '../../session/session.js';
import { profileView } from '../views.js';
import { VERSION } from '../version.js';

const started = Date.now();

/** A trace's records, its header checked: a newer format is refused rather than misread. */
function parseTrace(trace: string | Array<Record<string, unknown>>): { header: TraceHeader; records: unknown[] } {
  let records: unknown[];
  if (typeof trace === 'string') {
    const lines = trace.split('\n').filter((l) => l.trim() !== '');
    records = lines.map((l, i) => {
      try {
        return JSON.parse(l);
      } catch {
        throw new IommuError('BAD_REQUEST', `trace line ${i + 1} is not JSON`, { line: i + 1 });
      }
    });
  } else records = trace;
  const header = records[0] as TraceHeader | undefined;
  if (!header || header.format !== TRACE_FORMAT || typeof header.version !== 'number') {
    throw new IommuError('BAD_REQUEST', `a trace starts with a {"format":"${TRACE_FORMAT}","version":N,...} header line`);
  }
  if (header.version > TRACE_VERSION) {
    throw new IommuError('BAD_REQUEST', `trace format version ${header.version} is newer than this daemon's (${TRACE_VERSION})`, { version: header.version, supported: TRACE_VERSION });
  }
  return { header, records: records.slice(1) };
}

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
    capabilities: ['iommu-api', 'mmio', 'dma', 'memory', 'events', 'stale-tlb-detector', 'fault-injection', 'stall', 'masters', 'trace', 'stream', 'cluster', 'families', 'cpu-cache', 'bounce', ...(app.registry.opts.dataDir ? ['persistence'] : [])],
  }));

  app.get('/v1/profiles', { schema: { summary: 'Simulated SoCs: SMMUs, contexts, MIDs, memory map', tags: ['profiles'], response: { 200: S.ProfilesResponse } } }, async () => Object.values(PROFILES).map(profileView));

  app.post('/v1/sessions', { schema: { summary: 'Create a session (profile, inline topology or trace replay); returns the owner token', tags: ['sessions'], body: S.CreateSessionBody, response: { 201: S.CreateSessionResponse } } }, async (req, reply) => {
    const body = req.body ?? {};
    const trace = body.trace !== undefined ? parseTrace(body.trace) : null;
    let profile: Profile;
    if (trace && body.profile === undefined) profile = validateProfile(trace.header.session.profile);
    else if (body.profile === undefined || typeof body.profile === 'string') {
      const name = body.profile ?? 'msm8x60';
      // Own properties only: "__proto__", "constructor" or "toString" name no profile.
      const p = Object.hasOwn(PROFILES, name) ? PROFILES[name] : undefined;
      if (!p) throw new IommuError('BAD_REQUEST', `unknown profile ${name}`, { profile: name, known: Object.keys(PROFILES) });
      profile = p;
    } else {
      profile = validateProfile(body.profile as Profile);
    }
    if (body.persist === true && !app.registry.opts.dataDir) {
      throw new IommuError('BAD_REQUEST', 'persist: true needs a daemon started with --data-dir', { field: 'persist' });
    }
    const lim = app.iommudOptions.limits;
    const h = trace?.header.session;
    const { session, token } = await app.registry.create({
      name: body.name ?? h?.name ?? 'session',
      profile,
      tlbEntries: body.tlbEntries ?? h?.tlbEntries,
      tlbPolicy: body.tlbPolicy ?? h?.tlbPolicy,
      stallTimeoutMs: body.stallTimeoutMs ?? h?.stallTimeoutMs,
      cpuCache: body.cpuCache ?? h?.cpuCache,
      bounce: body.bounce ?? h?.bounce,
      eventRetain: lim.eventRetain,
      limits: { maxDomains: lim.maxDomainsPerSession, maxMappedPages: lim.maxMappedPagesPerSession },
      ...(trace ? { trace: trace.records } : {}),
      ...(body.persist !== undefined ? { persist: body.persist } : {}),
    });
    reply.code(201);
    return { id: session.id, name: session.name, profile: profile.name, token, createdAt: session.createdAt };
  });
};
