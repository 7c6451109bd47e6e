import type { FastifyInstance } from 'fastify';
import { build, type BuildOptions } from '../../src/server/app.js';

export interface Client {
  app: FastifyInstance;
  sid: string;
  token: string;
  call(method: string, url: string, body?: unknown, token?: string | null): Promise<{ status: number; body: any }>;
}

/** A fresh app with one session; `call` prefixes session-relative urls (starting with '/' but not '/v1'). */
export async function client(profile: unknown = 'msm8x60', opts: BuildOptions = {}, extra: Record<string, unknown> = {}): Promise<Client> {
  const app = await build({ validateResponses: true, ...opts });
  const created = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { profile, ...extra } });
  if (created.statusCode !== 201) throw new Error(`session create failed: ${created.body}`);
  const { id, token } = created.json();
  const call = async (method: string, url: string, body?: unknown, tok: string | null = token) => {
    const full = url.startsWith('/v1') || url.startsWith('/health') || url.startsWith('/metrics') || url.startsWith('/docs') ? url : `/v1/sessions/${id}${url}`;
    const res = await app.inject({
      method: method as 'GET',
      url: full,
      headers: tok ? { authorization: `Bearer ${tok}` } : {},
      ...(body !== undefined ? { payload: body as object } : {}),
    });
    let parsed: unknown = res.body;
    try {
      parsed = res.body ? JSON.parse(res.body) : undefined;
    } catch {
      // not JSON (metrics, docs)
    }
    return { status: res.statusCode, body: parsed };
  };
  return { app, sid: id, token, call };
}
