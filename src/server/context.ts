/** What the server layer hangs on requests and the app: the session registry, the caller's session and role. */
import type { FastifyRequest } from 'fastify';
import { WS_SESSION_GONE } from '../api/stream.js';
import type { Command, CommandOf } from '../session/commands.js';
import { frozenActor, type Actor, type Role, type Session, type SessionRegistry, type TokenInfo } from '../session/session.js';
import type { AnsweredOp, ResultView } from '../session/views.js';

declare module 'fastify' {
  interface FastifyInstance {
    registry: SessionRegistry;
    iommudOptions: ResolvedOptions;
  }
  interface FastifyRequest {
    iommuSession: Session;
    auth: TokenInfo;
  }
  interface FastifyContextConfig {
    /** The least role a route needs (default: observer for GET, operator otherwise). */
    role?: Role;
    /** Set on WebSocket routes (app.ts): the only ones that take `?token=`. */
    websocket?: boolean;
  }
}

export interface Limits {
  maxSessions: number;
  maxDomainsPerSession: number;
  maxMappedPagesPerSession: number;
  maxSubscribersPerSession: number;
  maxBatchOps: number;
  bodyLimit: number;
  eventRetain: number;
  /** Requests per second per session (token bucket, burst of one second's worth); 0: unlimited. */
  requestsPerSecond: number;
}

export interface ResolvedOptions {
  limits: Limits;
  /** Subscriber send buffer above which it is treated as behind (bytes). */
  wsHighWater: number;
}

/** Each token's actor, made once (frozenActor: the session holds it as it is instead of copying it per command). */
const ACTORS = new WeakMap<TokenInfo, Actor>();
/** The last token asked about and its actor: a client sends one token on every request (no WeakMap lookup then). */
let lastAuth: TokenInfo | null = null;
let lastActor: Actor | null = null;

export function actor(req: FastifyRequest): Actor {
  const auth = req.auth;
  let a = auth === lastAuth ? lastActor : ACTORS.get(auth);
  if (!a || a.role !== auth.role || a.label !== auth.label) ACTORS.set(auth, (a = frozenActor(auth.role, auth.label)));
  lastAuth = auth;
  lastActor = a;
  return a;
}

/** Applies a command for the caller and waits until it is durable; T is what that command returns. */
export async function apply<T>(req: FastifyRequest, cmd: Command): Promise<T> {
  return (await req.iommuSession.apply(actor(req), cmd)) as T;
}

/**
 * Applies a command for the caller, waits until it is durable, and answers its result as the API shapes it: the
 * result itself when there is nothing to wait for (no journal), else a promise (a refusal throws either way).
 */
export function applyView<K extends AnsweredOp>(req: FastifyRequest, cmd: CommandOf<K>): ResultView<K> | Promise<ResultView<K>> {
  return req.iommuSession.view.apply(actor(req), cmd);
}

/**
 * A reply built from a command's view, at once when the view is there (no journal), else once it is: route
 * handlers return what applyView gives without an async wrapper, so a reply with nothing to wait for leaves
 * without a promise (Fastify sends a handler's plain return value at once).
 */
export function answer<T, U>(view: T | Promise<T>, shape: (view: T) => U): U | Promise<U> {
  return view instanceof Promise ? view.then(shape) : shape(view);
}

/** Closes a socket with a reason when its session closes (deleted); returns the undo for the socket's own close. */
export function closeWithSession(s: Session, socket: { close(code: number, reason: string): void }): () => void {
  const onClose = () => socket.close(WS_SESSION_GONE, 'session deleted');
  s.closing.addEventListener('abort', onClose, { once: true });
  return () => s.closing.removeEventListener('abort', onClose);
}
