import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Registry } from 'prom-client';
import type { Session, SessionRegistry } from '../session/session.js';

export interface Metrics {
  registry: Registry;
  eventsGapped: Counter;
  subscribers: Gauge;
}

type Labels = Record<string, string>;

/**
 * A daemon-wide running total summed over sessions, read at scrape time. /metrics needs no token, and session
 * ids are what a token is checked against (API.md: they cannot be probed), so no series names a session. What
 * a deleted session had counted stays in the total, so the counter never goes down.
 */
class SessionTotal {
  /** Each live session's last values, by label key: folded into `retired` when the session is gone. */
  private readonly seen = new Map<Session, Map<string, number>>();
  private readonly retired = new Map<string, number>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly string[],
    private readonly sessions: SessionRegistry,
    private readonly read: (s: Session, add: (labels: Labels, n: number) => void) => void,
  ) {}

  metric() {
    const { name, help } = this;
    return { name, help, type: 'counter', aggregator: 'sum', get: async () => ({ name, help, type: 'counter', aggregator: 'sum', values: this.values() }) };
  }

  private values(): Array<{ labels: Labels; value: number }> {
    const live = new Set(this.sessions.sessions.values());
    for (const [s, last] of this.seen) {
      if (live.has(s)) continue;
      for (const [k, n] of last) this.retired.set(k, (this.retired.get(k) ?? 0) + n);
      this.seen.delete(s);
    }
    const sum = new Map(this.retired);
    for (const s of live) {
      const mine = new Map<string, number>();
      this.read(s, (labels, n) => {
        const k = JSON.stringify(this.labelNames.map((l) => labels[l] ?? ''));
        mine.set(k, (mine.get(k) ?? 0) + n);
      });
      this.seen.set(s, mine);
      for (const [k, n] of mine) sum.set(k, (sum.get(k) ?? 0) + n);
    }
    return [...sum].map(([k, value]) => {
      const vals = JSON.parse(k) as string[];
      return { labels: Object.fromEntries(this.labelNames.map((l, i) => [l, vals[i]!])), value };
    });
  }
}

/**
 * Prometheus metrics: HTTP by route and status, and the emulator's counters read at scrape time, summed over
 * sessions (no series carries a session id: /metrics needs no token).
 */
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
  const total = (name: string, help: string, labels: readonly string[], read: (s: Session, add: (labels: Labels, n: number) => void) => void) =>
    registry.registerMetric(new SessionTotal(name, help, labels, sessions, read).metric() as never);
  const perSmmu = (pick: (t: { hits: number; misses: number; evictions: number }) => number) => (s: Session, add: (l: Labels, n: number) => void) => {
    for (const t of s.tlbCounters()) add({ smmu: t.smmu }, pick(t));
  };
  total('iommud_tlb_hits_total', 'TLB hits by SMMU', ['smmu'], perSmmu((t) => t.hits));
  total('iommud_tlb_misses_total', 'TLB misses by SMMU', ['smmu'], perSmmu((t) => t.misses));
  total('iommud_tlb_evictions_total', 'TLB evictions by SMMU', ['smmu'], perSmmu((t) => t.evictions));
  total('iommud_transactions_total', 'Transactions through context banks', [], (s, add) => {
    add({}, s.transactions);
  });
  total('iommud_events_total', 'Events emitted by type', ['type'], (s, add) => {
    for (const [type, n] of s.bus.counts) add({ type }, n);
  });
  total('iommud_faults_total', 'Faults by kind', ['kind'], (s, add) => {
    for (const [kind, n] of s.faultCounts) add({ kind }, n);
  });
  total('iommud_journal_writes_total', 'Group commits (O_DSYNC writes) of session journals', [], (s, add) => {
    if (s.journal) add({}, s.journal.fsyncs);
  });
  total('iommud_bounce_bytes_total', 'Bytes copied through the bounce pools (swiotlb)', [], (s, add) => {
    if (s.bounce) add({}, s.bounce.bytesBounced);
  });
  total('iommud_coherency_events_total', 'Coherency check reports by check (sessions with a CPU cache)', ['check'], (s, add) => {
    if (s.cache) for (const [check, n] of s.coherencyCounts) add({ check }, n);
  });
  new Gauge({
    name: 'iommud_pool_used_bytes',
    help: 'Bytes allocated from the physical pools of every session, by pool name',
    labelNames: ['pool'],
    registers: [registry],
    collect() {
      this.reset();
      const used = new Map<string, number>();
      for (const s of sessions.sessions.values()) for (const p of s.poolsUsed()) used.set(p.name, (used.get(p.name) ?? 0) + p.used);
      for (const [pool, n] of used) this.set({ pool }, n);
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
  /** By route, then method: the route is the same string on every request, so no key is built per request. */
  private readonly byRoute = new Map<string, Map<string, RouteStats>>();

  record(route: string, method: string, status: number, seconds: number): void {
    let methods = this.byRoute.get(route);
    if (!methods) this.byRoute.set(route, (methods = new Map()));
    let r = methods.get(method);
    if (!r) {
      r = { route, method, statuses: new Map(), buckets: new Float64Array(BUCKETS.length), sum: 0, count: 0 };
      methods.set(method, r);
    }
    r.statuses.set(status, (r.statuses.get(status) ?? 0) + 1);
    let i = 0;
    while (i < BUCKETS.length && seconds > BUCKETS[i]!) i++;
    if (i < BUCKETS.length) r.buckets[i]!++;
    r.sum += seconds;
    r.count++;
  }

  private all(): RouteStats[] {
    return [...this.byRoute.values()].flatMap((methods) => [...methods.values()]);
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
        values: this.all().flatMap((r) =>
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
        values: this.all().flatMap((r) => {
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
