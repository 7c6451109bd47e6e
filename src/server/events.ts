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
 * Each event is serialized once, whatever the number of subscribers: its JSON text as one complete WebSocket text
 * frame (RFC 6455 5.2: FIN, opcode 1, unmasked as a server's frames are), cached on the event (JSON.stringify
 * ignores symbol keys, so the cache never leaks into the text) and shared by every subscriber's batch.
 */
const FRAME = Symbol('frame');
function eventFrame(ev: IommuEvent): Buffer {
  const e = ev as IommuEvent & { [FRAME]?: Buffer };
  return (e[FRAME] ??= textFrame(JSON.stringify(ev)));
}

export function textFrame(text: string): Buffer {
  const n = Buffer.byteLength(text);
  const head = n < 126 ? 2 : n < 0x10000 ? 4 : 10;
  const f = Buffer.allocUnsafe(head + n);
  f[0] = 0x81;
  if (head === 2) f[1] = n;
  else if (head === 4) {
    f[1] = 126;
    f.writeUInt16BE(n, 2);
  } else {
    f[1] = 127;
    f.writeUInt32BE(0, 2);
    f.writeUInt32BE(n, 6);
  }
  f.write(text, head);
  return f;
}

/**
 * Subscribers with the same filters get the same frames in a tick: their batches are concatenated once. The
 * last concatenation is kept until the tick's flushes are done (elements compared by identity: cheaper than the
 * copy it saves).
 */
let lastBatch: { parts: Buffer[]; bytes: number; joined: Buffer } | null = null;
function joinBatch(parts: Buffer[], bytes: number): Buffer {
  if (parts.length === 1) return parts[0]!;
  const last = lastBatch;
  if (last && last.bytes === bytes && last.parts.length === parts.length && last.parts.every((p, i) => p === parts[i])) return last.joined;
  if (!last) setImmediate(() => (lastBatch = null));
  lastBatch = { parts, bytes, joined: Buffer.concat(parts, bytes) };
  return lastBatch.joined;
}

/** The text a frame carries (for a socket whose extensions make ws build its own frames). */
function framePayload(f: Buffer): Buffer {
  const len7 = f[1]! & 0x7f;
  return f.subarray(len7 < 126 ? 2 : len7 === 126 ? 4 : 10);
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
        // Events come in bursts (one access-batch can fault thousands of times): a subscriber's events of one tick
        // leave as one write of their ready-made frames, instead of a ws send (header, two socket writes) per event
        // and subscriber. Written to the TCP socket under ws, which is safe because no extension (compression)
        // rewrites frames on this server and every other message of this socket goes through send(), which writes
        // the batch first: frames leave whole and in order. "Behind" means data from earlier ticks still unsent
        // past the high-water mark, or one tick's burst past 8 times it.
        const raw = socket.extensions === '' ? (socket as unknown as { _socket?: { write(b: Buffer): boolean } })._socket : undefined;
        let batch: Buffer[] = [];
        let batchBytes = 0;
        let tickStart = -1;
        const flush = () => {
          tickStart = -1;
          if (batch.length === 0) return;
          const frames = joinBatch(batch, batchBytes);
          batch = [];
          batchBytes = 0;
          if (socket.readyState === socket.OPEN) raw!.write(frames);
        };
        const send = (msg: unknown) => {
          flush();
          socket.send(JSON.stringify(msg));
        };
        // Whoever closes the socket (session deleted, daemon stopping) closes it after this tick's events: the
        // session's `delete` event, emitted just before its sockets close, still arrives.
        const close = socket.close.bind(socket);
        socket.close = (code?: number, reason?: string | Buffer) => {
          flush();
          close(code, reason);
        };
        const tryCatchUp = () => {
          if (behindFrom === 0 || socket.readyState !== socket.OPEN) return;
          // The frames batched this tick count too: they are as good as in the send buffer.
          if (socket.bufferedAmount + batchBytes > highWater / 2) return;
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
          if (tickStart < 0) {
            tickStart = socket.bufferedAmount;
            process.nextTick(flush);
          }
          const frame = eventFrame(ev);
          const thisTick = raw ? batchBytes + frame.length : socket.bufferedAmount - tickStart;
          if (tickStart > highWater || thisTick > 8 * highWater) {
            behindFrom = behindTo = ev.seq;
            timer = setInterval(tryCatchUp, 20);
            timer.unref();
            return;
          }
          if (!raw) return void socket.send(framePayload(frame), { binary: false });
          batch.push(frame);
          batchBytes += frame.length;
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
