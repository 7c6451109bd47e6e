/**
 * The event stream over WebSocket. Each subscriber has its own delivery state: live events go out while the
 * socket's send buffer stays under a high-water mark; past it the subscriber is "behind", and once the buffer
 * drains it receives exactly one {type:"gap", from, to} for what it missed, then live events again. Nothing is
 * dropped silently and nothing is buffered without bound.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import '@fastify/websocket';
import type { WebSocket } from 'ws';
import { z } from 'zod';
import * as S from '../api/schemas.js';
import { IommuError, fail, refusal } from '../errors.js';
import type { IommuEvent } from '../events/bus.js';
import { Session } from '../session/session.js';
import { closeWithSession } from './context.js';
import type { Metrics } from './metrics.js';

/**
 * Each event is serialized once, to UTF-8 bytes, whatever the number of subscribers (JSON.stringify ignores
 * symbol keys, so the cache never leaks into the text).
 */
const JSON_BYTES = Symbol('json');
function eventBytes(ev: IommuEvent): Buffer {
  const e = ev as IommuEvent & { [JSON_BYTES]?: Buffer };
  return (e[JSON_BYTES] ??= Buffer.from(JSON.stringify(ev)));
}

const ResumeMsg = z.strictObject({ type: z.literal('resume'), stall: z.string(), action: z.enum(['retry', 'terminate']) });

export function eventRoutes(metrics: Metrics): FastifyPluginAsyncZod {
  return async (app) => {
    app.get(
      '/events',
      {
        websocket: true,
        // The subscriber quota is checked before the upgrade, so a refused client gets a plain 429.
        preValidation: (req, _reply, done) => {
          try {
            checkSubscriberLimit(req.iommuSession, app.iommudOptions.limits.maxSubscribersPerSession);
            done();
          } catch (e) {
            done(e as Error);
          }
        },
        schema: {
          summary: 'Event stream (WebSocket): seq, since, types and device filters, gaps',
          tags: ['events'],
          querystring: S.EventsQuery,
          params: z.object({ sid: z.string() }),
          // What the socket then carries: one JSON text message per event, a gap notice, or a refused resume.
          response: {
            101: z.union([S.Event, S.GapMessage, S.SocketErrorMessage]).meta({
              description: 'Switching Protocols; then JSON text messages: one per event (its type\'s fields only), {type:"gap", from, to} for missed events, {type:"error", error} for a refused resume',
            }),
          },
        },
      },
      (socket: WebSocket, req) => {
        const s = req.iommuSession;
        const q = req.query as z.infer<typeof S.EventsQuery>;
        const types = q.types ? new Set(q.types.split(',')) : null;
        const device = q.device ?? null;
        const highWater = app.iommudOptions.wsHighWater;
        const matches = (ev: IommuEvent): boolean => {
          if (types && !types.has(ev.type)) return false;
          if (device === null) return true;
          // Not every event type names a device or a domain: those that do not never match a device filter.
          const at = ev as { device?: string | null; domain?: string | null };
          if (at.device === device) return true;
          const dom = s.soc.devices.get(device)?.bank.domain;
          return at.domain != null && dom != null && at.domain === dom;
        };
        let behindFrom = 0; // first seq missed while behind (0: not behind)
        let behindTo = 0;
        let timer: NodeJS.Timeout | null = null;
        const send = (msg: unknown) => socket.send(JSON.stringify(msg));
        // Events come in bursts (one access-batch can fault thousands of times): the TCP socket is corked for the
        // rest of the tick so a burst leaves in one write instead of one system call per frame. "Behind" means
        // data from earlier ticks still unsent past the high-water mark, or one tick's burst past 8 times it.
        const raw = (socket as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
        let corked = false;
        let tickStart = 0;
        const uncork = () => {
          corked = false;
          raw?.uncork();
        };
        const tryCatchUp = () => {
          if (behindFrom === 0 || socket.readyState !== socket.OPEN) return;
          if (socket.bufferedAmount > highWater / 2) return;
          send({ type: 'gap', from: behindFrom, to: behindTo });
          metrics.eventsGapped.inc(behindTo - behindFrom + 1);
          behindFrom = 0;
          if (timer) clearInterval(timer);
          timer = null;
        };
        const deliver = (ev: IommuEvent) => {
          if (behindFrom !== 0) {
            tryCatchUp();
            if (behindFrom !== 0) {
              behindTo = ev.seq;
              return;
            }
          }
          if (!matches(ev)) return;
          if (!corked) {
            corked = true;
            tickStart = socket.bufferedAmount;
            raw?.cork();
            process.nextTick(uncork);
          }
          if (tickStart > highWater || socket.bufferedAmount - tickStart > 8 * highWater) {
            behindFrom = behindTo = ev.seq;
            timer = setInterval(tryCatchUp, 20);
            timer.unref();
            return;
          }
          socket.send(eventBytes(ev), { binary: false });
        };
        if (q.since !== undefined) {
          const { gap, events } = s.bus.replay(q.since);
          if (gap) send({ type: 'gap', ...gap });
          for (const ev of events) deliver(ev);
        }
        const unsubscribe = s.bus.subscribe(deliver);
        const untie = closeWithSession(s, socket);
        metrics.subscribers.inc();
        socket.on('close', () => {
          unsubscribe();
          untie();
          if (timer) clearInterval(timer);
          metrics.subscribers.dec();
        });
        socket.on('message', (raw) => {
          const reply = (err: IommuError) => send({ type: 'error', ...err.toJSON() });
          let msg: z.infer<typeof ResumeMsg>;
          try {
            const parsed = ResumeMsg.safeParse(JSON.parse(String(raw)));
            if (!parsed.success) return reply(refusal('badSocketMessage'));
            msg = parsed.data;
          } catch {
            return reply(refusal('socketNotJson'));
          }
          if (!Session.allows(req.auth.role, 'operator')) return reply(refusal('resumeForbidden'));
          for (const smmu of s.soc.smmus) {
            for (const bank of smmu.banks) {
              if (bank.stalls.some((x) => x.id === msg.stall)) {
                // apply() is awaited here: a refusal or a journal failure (503) is answered on the socket, never
                // left as a rejected promise that would end the process.
                s.apply({ role: req.auth.role, label: req.auth.label }, { op: 'resume', smmu: smmu.name, ctx: String(bank.index), stall: msg.stall, action: msg.action }).catch((e: unknown) => {
                  if (e instanceof IommuError) return reply(e);
                  req.log.error({ err: e }, 'resume failed');
                  reply(refusal('resumeFailed'));
                });
                return;
              }
            }
          }
          reply(refusal('noStall', { stall: msg.stall }));
        });
      },
    );
  };
}

/** Refuses a new subscriber past the per-session limit (before the upgrade). */
export function checkSubscriberLimit(s: Session, limit: number): void {
  if (s.bus.subscriberCount >= limit) fail('tooManySubscribers', { limit });
}
