/**
 * The binary translate stream for HIL rigs (protocol in src/api/stream.ts and docs/stream.md): one WebSocket per
 * device, pipelined request frames, one reply frame per request in request order.
 */
import '@fastify/websocket';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { WebSocket } from 'ws';
import { z } from 'zod';
import { decodeRequest, StreamFrameError } from '../api/stream.js';
import { IommuError, refusal } from '../errors.js';
import { encodeItems, STREAM_MAX_ITEMS } from '../session/commands.js';
import { actor, closeWithSession } from './context.js';


export const streamRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/devices/:device/stream',
    {
      websocket: true,
      config: { role: 'operator' },
      schema: { summary: 'Binary translate stream for HIL rigs (WebSocket)', tags: ['devices'], description: 'Binary translate stream (WebSocket); frame format in docs/stream.md', params: z.object({ sid: z.string(), device: z.string() }) },
    },
    (socket: WebSocket, req) => {
      const s = req.iommuSession;
      const device = (req.params as { device: string }).device;
      const who = actor(req);
      const highWater = app.iommudOptions.wsHighWater;
      // Replies leave in request order: each waits for the previous one (and for its own durability).
      let tail: Promise<void> = Promise.resolve();
      // Bytes of replies made but not yet handed to the socket; with the socket's send buffer, the backlog a
      // client that does not read leaves behind. Past the high-water mark the socket stops being read (TCP then
      // pushes back on the client) until the backlog has drained to half of it.
      let queued = 0;
      let drainTimer: NodeJS.Timeout | null = null;
      const backlog = () => queued + socket.bufferedAmount;
      const stopDrainTimer = () => {
        if (drainTimer) clearInterval(drainTimer);
        drainTimer = null;
      };
      const throttle = () => {
        if (drainTimer || backlog() <= highWater) return;
        socket.pause();
        drainTimer = setInterval(() => {
          if (backlog() > highWater / 2) return;
          stopDrainTimer();
          socket.resume();
        }, 10);
        drainTimer.unref();
      };
      const unexpected = (e: unknown) => {
        req.log.error({ err: e }, 'stream handler failed');
        socket.close(1011, 'internal error');
      };
      /** Queues one reply after the previous ones; `make` runs when its turn comes. */
      const enqueue = (bytes: number, make: () => Promise<Uint8Array | string> | Uint8Array | string) => {
        queued += bytes;
        tail = tail
          .then(make)
          .then((msg) => {
            queued -= bytes;
            if (socket.readyState === socket.OPEN) socket.send(msg);
          })
          .catch((e) => {
            queued -= bytes;
            unexpected(e);
          });
        throttle();
      };
      const fail = (id: number | null, e: IommuError) => {
        const text = JSON.stringify({ type: 'error', id, ...e.toJSON() });
        enqueue(text.length, () => text);
      };
      const untie = closeWithSession(s, socket);
      socket.on('close', () => {
        untie();
        stopDrainTimer();
      });
      socket.on('message', (raw, isBinary) => {
        if (!isBinary) return fail(null, refusal('streamNotBinary'));
        const buf = raw as Buffer;
        let id: number | null = buf.length >= 8 ? buf.readUInt32LE(4) : null;
        try {
          const r = decodeRequest(buf, STREAM_MAX_ITEMS);
          id = r.id;
          const { result, durable } = s.run(who, {
            op: 'stream',
            device,
            sop: r.op,
            priv: r.priv,
            mid: r.mid,
            iovas: encodeItems(r.iovas),
            ...(r.lengths ? { lengths: encodeItems(r.lengths) } : {}),
            ...(r.data ? { data: Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength).toString('base64') } : {}),
            ...(r.values ? { values: encodeItems(r.values) } : {}),
          });
          // This batch's events leave now, not after every other request this socket read brought.
          s.bus.endBurst();
          const reply = result as Uint8Array;
          new DataView(reply.buffer, reply.byteOffset).setUint32(4, r.id, true);
          const rid = r.id;
          enqueue(reply.byteLength, async () => {
            try {
              await durable;
              return reply;
            } catch {
              return JSON.stringify({ type: 'error', id: rid, ...refusal('batchNotDurable').toJSON() });
            }
          });
        } catch (e) {
          if (e instanceof StreamFrameError) fail(id, refusal('badFrame', { reason: e.message }));
          else if (e instanceof IommuError) fail(id, e);
          else unexpected(e);
        }
      });
    },
  );
};
