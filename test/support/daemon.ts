import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll } from 'vitest';
import { build } from '../../src/server/app.js';

/** A daemon on a free loopback port for the enclosing describe block (what the example rigs connect to). */
export function listeningDaemon(): { url(): string } {
  let app: FastifyInstance;
  let url = '';
  beforeAll(async () => {
    app = await build();
    url = await app.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(() => app.close());
  return { url: () => url };
}
