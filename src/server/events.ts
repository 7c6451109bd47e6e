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
import { frameHead, frameHeadFor, frameText, textFrame, writeFrameHead } from '../events/frames.js';
import { Session } from '../session/session.js';
import { closeWithSession } from './context.js';
import type { Metrics } from './metrics.js';

export { textFrame };

/**
 * Each event is encoded once, when the session emits it, into a frame of the session's log (src/events/frames.ts):
 * a subscriber's events of one burst are ranges of those bytes, and consecutive events are adjacent, so the usual
 * burst of one subscriber is one slice written as it is, by every subscriber, without a copy. What must be joined
 * (ranges split by a filter or a chunk boundary, or a batched message) is joined once per burst for all the
 * subscribers that got the same events: the last join is kept until the burst's flushes are done.
 */
interface Pending {
  /** true: the events as one JSON array message (batch=1); false: one frame per event. */
  batched: boolean;
  /** Ranges [starts[i], ends[i]) of chunks[i]: each one frame or a run of adjacent frames of the log. */
  chunks: Buffer[];
  starts: number[];
  ends: number[];
}
let lastJoin: (Pending & { out: Buffer }) | null = null;

function sameEvents(a: Pending, b: Pending): boolean {
  if (a.batched !== b.batched || a.chunks.length !== b.chunks.length) return false;
  for (let i = 0; i < a.chunks.length; i++) if (a.chunks[i] !== b.chunks[i] || a.starts[i] !== b.starts[i] || a.ends[i] !== b.ends[i]) return false;
  return true;
}

/** The bytes of a subscriber's pending events: a slice of the log, or a join of its ranges. */
function pendingBytes(p: Pending): Buffer {
  if (!p.batched && p.chunks.length === 1) return p.chunks[0]!.subarray(p.starts[0], p.ends[0]);
  if (lastJoin && sameEvents(lastJoin, p)) return lastJoin.out;
  const out = p.batched ? batchFrame(p) : Buffer.concat(p.chunks.map((c, i) => c.subarray(p.starts[i], p.ends[i])));
  if (!lastJoin) setImmediate(() => (lastJoin = null));
  lastJoin = { batched: p.batched, chunks: p.chunks.slice(), starts: p.starts.slice(), ends: p.ends.slice(), out };
  return out;
}

/**
 * Batch frames are joined into one buffer, reused while every socket write of the last join took its bytes at
 * once (nothing left queued in the socket that could still refer to them): a fresh buffer of 100 KB or so per
 * burst cost more than the copy itself (first touch of its pages, collections for external memory).
 */
let arena = Buffer.allocUnsafeSlow(0);
let arenaFree = true;

/** After `bytes` went to a socket: if they are the arena's and the socket kept some, the arena is not reused. */
export function wrote(bytes: Buffer, socketKept: boolean): void {
  if (socketKept && bytes.buffer === arena.buffer) arenaFree = false;
}

/** Payload length of the frame at `at` of `c` (frames of the log are under 2^32 bytes). */
function frameLen(c: Buffer, at: number): number {
  const len7 = c[at + 1]! & 0x7f;
  return len7 < 126 ? len7 : len7 === 126 ? c.readUInt16BE(at + 2) : c.readUInt32BE(at + 6);
}

/**
 * One text frame holding `[event,event,...]`: the JSON texts of the frames, joined by commas. Each pending range is
 * a run of frames adjacent in one chunk of the log (the usual burst is one range): it is copied with one call and
 * then closed up in place, each text moved over the frame headers before it. A Buffer.copy per event made a view
 * object per event and cost more than the bytes it moved.
 */
export function batchFrame(p: Pending): Buffer {
  const k = p.chunks.length;
  let n = 1;
  let slack = 0;
  for (let i = 0; i < k; i++) {
    const c = p.chunks[i]!;
    const end = p.ends[i]!;
    for (let at = p.starts[i]!; at < end; ) {
      const head = frameHead(c[at + 1]!);
      const len = frameLen(c, at);
      n += len + 1;
      slack += head;
      at += head + len;
    }
  }
  const head = frameHeadFor(n);
  // Room for a run's frame headers too, until they are closed up.
  const size = head + n + slack;
  if (!arenaFree || arena.length < size) arena = Buffer.allocUnsafeSlow(Math.max(size, 256 * 1024));
  arenaFree = true;
  const out = arena;
  writeFrameHead(out, 0, n);
  let o = head;
  out[o++] = 0x5b;
  for (let i = 0; i < k; i++) {
    const c = p.chunks[i]!;
    const end = p.ends[i]!;
    let at = p.starts[i]!;
    const from = at + frameHead(c[at + 1]!);
    // Offsets in the chunk plus `shift` are offsets in out.
    const shift = o - from;
    c.copy(out, o, from, end);
    let len = frameLen(c, at);
    o += len;
    at = from + len;
    while (at < end) {
      out[o++] = 0x2c;
      const text = at + frameHead(c[at + 1]!);
      len = frameLen(c, at);
      out.copyWithin(o, text + shift, text + len + shift);
      o += len;
      at = text + len;
    }
    if (i + 1 < k) out[o++] = 0x2c;
  }
  out[o] = 0x5d;
  return out.subarray(0, head + n);
}

/** The text a frame carries (for a socket whose extensions make ws build its own frames). */
function framePayload(f: Buffer): Buffer {
  return f.subarray(frameHead(f[1]!));
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
        // Events come in bursts (one access-batch can fault thousands of times): a subscriber's events of one burst
        // (ended by the bus: after a stream batch, after BURST_MAX events, at the end of the event loop's turn) leave as one
        // write of their frames (the log's bytes, see pendingBytes), instead of a ws send (header,
        // two socket writes) per event and subscriber. Written to the TCP socket under ws, which is safe because no
        // extension (compression) rewrites frames on this server and every other message of this socket goes
        // through send(), which writes the pending events first: frames leave whole and in order. With batch=1 the
        // burst's events leave as one JSON array message. "Behind" means data from earlier bursts still unsent past
        // the high-water mark, or one burst past 8 times it.
        const raw = socket.extensions === '' ? (socket as unknown as { _socket?: { write(b: Buffer): boolean; writableLength: number } })._socket : undefined;
        const pending: Pending = { batched: q.batch === '1', chunks: [], starts: [], ends: [] };
        let queued = 0;
        let burstStart = -1;
        const flush = () => {
          burstStart = -1;
          const n = pending.chunks.length;
          if (n === 0) return;
          if (socket.readyState === socket.OPEN) {
            if (raw) {
              const bytes = pendingBytes(pending);
              raw.write(bytes);
              wrote(bytes, raw.writableLength !== 0);
            } else if (pending.batched) {
              const bytes = pendingBytes(pending);
              socket.send(framePayload(bytes), { binary: false });
              wrote(bytes, true);
            }
            else {
              // A range holds adjacent frames: one message each.
              for (let i = 0; i < n; i++) {
                const c = pending.chunks[i]!;
                for (let at = pending.starts[i]!; at < pending.ends[i]!; ) {
                  const text = at + frameHead(c[at + 1]!);
                  const len = frameLen(c, at);
                  socket.send(c.toString('utf8', text, text + len));
                  at = text + len;
                }
              }
            }
          }
          pending.chunks.length = pending.starts.length = pending.ends.length = 0;
          queued = 0;
        };
        const send = (msg: unknown) => {
          flush();
          socket.send(JSON.stringify(msg));
        };
        // Whoever closes the socket (session deleted, daemon stopping) closes it after this burst's events: the
        // session's `delete` event, emitted just before its sockets close, still arrives.
        const close = socket.close.bind(socket);
        socket.close = (code?: number, reason?: string | Buffer) => {
          flush();
          close(code, reason);
        };
        const tryCatchUp = () => {
          if (behindFrom === 0 || socket.readyState !== socket.OPEN) return;
          // The events pending this burst count too: they are as good as in the send buffer.
          if (socket.bufferedAmount + queued > highWater / 2) return;
          send({ type: 'gap', from: behindFrom, to: behindTo });
          metrics.eventsGapped.inc(behindTo - behindFrom + 1);
          behindFrom = 0;
          if (timer) clearInterval(timer);
          timer = null;
        };
        const deliver = (ev: IommuEvent, chunk: Buffer, start: number, end: number) => {
          if (behindFrom !== 0) {
            tryCatchUp();
            if (behindFrom !== 0) {
              behindTo = ev.seq;
              return;
            }
          }
          if (!matches(ev)) return;
          // The bus ends the burst (flush): at the end of the turn, after a stream batch or after BURST_MAX events.
          if (burstStart < 0) burstStart = socket.bufferedAmount;
          if (burstStart > highWater || queued + end - start > 8 * highWater) {
            behindFrom = behindTo = ev.seq;
            timer = setInterval(tryCatchUp, 20);
            timer.unref();
            return;
          }
          const n = pending.chunks.length;
          // The next event's frame usually follows the last one in the log: one range grows (a batch=1 subscriber's
          // too: batchFrame finds the frames in a range by their headers, once per burst for all subscribers).
          if (n !== 0 && pending.chunks[n - 1] === chunk && pending.ends[n - 1] === start) pending.ends[n - 1] = end;
          else {
            pending.chunks.push(chunk);
            pending.starts.push(start);
            pending.ends.push(end);
          }
          queued += end - start;
        };
        if (q.since !== undefined) {
          const { gap, frames } = s.bus.retained(q.since);
          if (gap) send({ type: 'gap', ...gap });
          for (const f of frames) deliver(JSON.parse(frameText(f.chunk, f.start, f.end)) as IommuEvent, f.chunk, f.start, f.end);
          flush();
        }
        const unsubscribe = s.bus.subscribe(deliver, flush);
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
