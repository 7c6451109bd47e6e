/**
 * The binary translate stream for HIL rigs (protocol in src/api/stream.ts and docs/stream.md): one WebSocket per
 * device, pipelined request frames, one reply frame per request in request order.
 */
import '@fastify/websocket';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { WebSocket } from 'ws';
import { z } from 'zod';
import { decodeRequest, StreamFrameError } from '../api/stream.js';
import { IommuError } from '../errors.js';
import { actor } from './context.js';

/** Items per request frame (a batch of 4096 is the benchmark's; 65536 keeps a frame under 1 MiB). */
export const STREAM_MAX_ITEMS = 65536;

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
      // Replies leave in request order: each waits for the previous one (and for its own durability).
      let tail: Promise<void> = Promise.resolve();
      socket.on('message', (raw, isBinary) => {
        const fail = (id: number | null, e: IommuError) => {
          tail = tail.then(() => socket.send(JSON.stringify({ type: 'error', id, ...e.toJSON() })));
        };
        if (!isBinary) return fail(null, new IommuError('BAD_REQUEST', 'the stream takes binary frames (docs/stream.md)'));
        const buf = raw as Buffer;
        let id: number | null = buf.length >= 8 ? buf.readUInt32LE(4) : null;
        try {
          const r = decodeRequest(buf, STREAM_MAX_ITEMS);
          id = r.id;
          const b64 = (a: Uint32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
          const { result, durable } = s.run(who, {
            op: 'stream',
            device,
            sop: r.op,
            priv: r.priv,
            mid: r.mid,
            iovas: b64(r.iovas),
            ...(r.lengths ? { lengths: b64(r.lengths) } : {}),
            ...(r.data ? { data: Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength).toString('base64') } : {}),
            ...(r.values ? { values: b64(r.values) } : {}),
          });
          const reply = result as Uint8Array;
          new DataView(reply.buffer, reply.byteOffset).setUint32(4, r.id, true);
          const rid = r.id;
          tail = tail.then(async () => {
            try {
              await durable;
              socket.send(reply);
            } catch {
              socket.send(JSON.stringify({ type: 'error', id: rid, ...new IommuError('UNAVAILABLE', 'the batch was applied but could not be made durable').toJSON() }));
            }
          });
        } catch (e) {
          if (e instanceof StreamFrameError) fail(id, new IommuError('BAD_REQUEST', e.message));
          else if (e instanceof IommuError) fail(id, e);
          else throw e;
        }
      });
    },
  );
};
