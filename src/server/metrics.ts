import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { SessionRegistry } from '../session/session.js';

export interface Metrics {
  registry: Registry;
  eventsGapped: Counter;
  subscribers: Gauge;
}

/** Prometheus metrics: HTTP by route and status, and the emulator's counters read at scrape time. */
export function installMetrics(app: FastifyInstance, sessions: SessionRegistry): Metrics {
  const registry = new Registry();
  const requests = new Counter({ name: 'iommud_http_requests_total', help: 'HTTP requests by route, method and status', labelNames: ['route', 'method', 'status'], registers: [registry] });
  const latency = new Histogram({
    name: 'iommud_http_request_duration_seconds',
    help: 'HTTP request latency',
    labelNames: ['route', 'method'],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1],
    registers: [registry],
  });
  const eventsGapped = new Counter({ name: 'iommud_events_gapped_total', help: 'Events a slow subscriber missed, announced as gaps', registers: [registry] });
  const subscribers = new Gauge({ name: 'iommud_subscribers', help: 'Open event-stream subscribers', registers: [registry] });
  new Gauge({
    name: 'iommud_sessions',
    help: 'Sessions held',
    registers: [registry],
    collect() {
      this.set(sessions.sessions.size);
    },
  });
  const perSmmu = (name: string, help: string, pick: (t: { hits: number; misses: number; evictions: number; invalidations: number }) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['session', 'smmu'],
      registers: [registry],
      collect() {
        this.reset();
        for (const s of sessions.sessions.values()) for (const m of s.soc.smmus) this.set({ session: s.id, smmu: m.name }, pick(m.tlbStats()));
      },
    });
  perSmmu('iommud_tlb_hits', 'TLB hits per SMMU', (t) => t.hits);
  perSmmu('iommud_tlb_misses', 'TLB misses per SMMU', (t) => t.misses);
  perSmmu('iommud_tlb_evictions', 'TLB evictions per SMMU', (t) => t.evictions);
  new Gauge({
    name: 'iommud_transactions',
    help: 'Transactions through context banks',
    labelNames: ['session'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of sessions.sessions.values()) {
        let n = 0;
        for (const m of s.soc.smmus) for (const b of m.banks) n += b.transactions;
        this.set({ session: s.id }, n);
      }
    },
  });
  new Gauge({
    name: 'iommud_events',
    help: 'Events emitted by type',
    labelNames: ['session', 'type'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of sessions.sessions.values()) for (const [type, n] of s.bus.counts) this.set({ session: s.id, type }, n);
    },
  });
  new Gauge({
    name: 'iommud_faults',
    help: 'Faults by kind',
    labelNames: ['session', 'kind'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of sessions.sessions.values()) for (const [kind, n] of s.faultCounts) this.set({ session: s.id, kind }, n);
    },
  });

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unknown';
    requests.inc({ route, method: req.method, status: reply.statusCode });
    latency.observe({ route, method: req.method }, reply.elapsedTime / 1000);
  });
  app.get('/metrics', { schema: { tags: ['operations'] } }, async (_req, reply) => {
    reply.type(registry.contentType);
    return registry.metrics();
  });
  return { registry, eventsGapped, subscribers };
}
