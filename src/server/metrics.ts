import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Registry } from 'prom-client';
import type { SessionRegistry } from '../session/session.js';

export interface Metrics {
  registry: Registry;
  eventsGapped: Counter;
  subscribers: Gauge;
}

/** Prometheus metrics: HTTP by route and status, and the emulator's counters read at scrape time. */
export function installMetrics(app: FastifyInstance, sessions: SessionRegistry): Metrics {
  const registry = new Registry();
  const http = new HttpStats();
  registry.registerMetric(http.requestsMetric() as never);
  registry.registerMetric(http.latencyMetric() as never);
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
        for (const s of sessions.sessions.values()) for (const m of s.soc.smmus) this.set({ session: s.id, smmu: m.name }, pick({ invalidations: 0, ...m.tlbView() } as { hits: number; misses: number; evictions: number; invalidations: number }));
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

  new Gauge({
    name: 'iommud_bounce_bytes',
    help: 'Bytes copied through the bounce pool (swiotlb), per session',
    labelNames: ['session'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of sessions.sessions.values()) if (s.bounce) this.set({ session: s.id }, s.bounce.bytesBounced);
    },
  });
  new Gauge({
    name: 'iommud_coherency_events',
    help: 'Coherency check reports by check (sessions with a CPU cache)',
    labelNames: ['session', 'check'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of sessions.sessions.values()) if (s.cache) for (const [check, n] of s.coherencyCounts) this.set({ session: s.id, check }, n);
    },
  });
  new Gauge({
    name: 'iommud_pool_used_bytes',
    help: 'Bytes allocated from each physical pool',
    labelNames: ['session', 'pool'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of sessions.sessions.values()) for (const p of s.pools.usage()) this.set({ session: s.id, pool: p.name }, p.used);
    },
  });

  new Gauge({
    name: 'iommud_journal_failed_sessions',
    help: 'Sessions whose journal could not be written (their mutations are refused with 503)',
    registers: [registry],
    collect() {
      let n = 0;
      for (const s of sessions.sessions.values()) if (s.journal?.failed) n++;
      this.set(n);
    },
  });
  new Gauge({
    name: 'iommud_journal_writes',
    help: 'Group commits (O_DSYNC writes) per session journal',
    labelNames: ['session'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of sessions.sessions.values()) if (s.journal) this.set({ session: s.id }, s.journal.fsyncs);
    },
  });

  app.addHook('onResponse', (req, reply, done) => {
    http.record(req.routeOptions.url ?? 'unknown', req.method, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });
  app.get('/metrics', { schema: { summary: 'Prometheus metrics', tags: ['operations'] } }, async (_req, reply) => {
    reply.type(registry.contentType);
    return registry.metrics();
  });
  return { registry, eventsGapped, subscribers };
}

const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1];

interface RouteStats {
  route: string;
  method: string;
  statuses: Map<number, number>;
  buckets: Float64Array;
  sum: number;
  count: number;
}

/**
 * Request counts and the latency histogram, recorded with one Map lookup per request and turned into
 * Prometheus series only at scrape time (prom-client's labelled observe costs more than a whole route here).
 */
class HttpStats {
  private readonly byRoute = new Map<string, RouteStats>();

  record(route: string, method: string, status: number, seconds: number): void {
    const key = method + ' ' + route;
    let r = this.byRoute.get(key);
    if (!r) {
      r = { route, method, statuses: new Map(), buckets: new Float64Array(BUCKETS.length), sum: 0, count: 0 };
      this.byRoute.set(key, r);
    }
    r.statuses.set(status, (r.statuses.get(status) ?? 0) + 1);
    let i = 0;
    while (i < BUCKETS.length && seconds > BUCKETS[i]!) i++;
    if (i < BUCKETS.length) r.buckets[i]!++;
    r.sum += seconds;
    r.count++;
  }

  requestsMetric() {
    return {
      name: 'iommud_http_requests_total',
      help: 'HTTP requests by route, method and status',
      type: 'counter',
      aggregator: 'sum',
      get: async () => ({
        name: 'iommud_http_requests_total',
        help: 'HTTP requests by route, method and status',
        type: 'counter',
        aggregator: 'sum',
        values: [...this.byRoute.values()].flatMap((r) =>
          [...r.statuses].map(([status, value]) => ({ labels: { route: r.route, method: r.method, status }, value })),
        ),
      }),
    };
  }

  latencyMetric() {
    const name = 'iommud_http_request_duration_seconds';
    return {
      name,
      help: 'HTTP request latency',
      type: 'histogram',
      aggregator: 'sum',
      get: async () => ({
        name,
        help: 'HTTP request latency',
        type: 'histogram',
        aggregator: 'sum',
        values: [...this.byRoute.values()].flatMap((r) => {
          const labels = { route: r.route, method: r.method };
          let cum = 0;
          return [
            ...BUCKETS.map((le, i) => ({ metricName: `${name}_bucket`, labels: { ...labels, le }, value: (cum += r.buckets[i]!) })),
            { metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: r.count },
            { metricName: `${name}_sum`, labels, value: r.sum },
            { metricName: `${name}_count`, labels, value: r.count },
          ];
        }),
      }),
    };
  }
}
