import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { IommuError, refusal } from '../errors.js';

/** Every refusal leaves as {"error":{code,message,details?}} with the status of the one error table. */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | IommuError, req, reply) => {
    if (err instanceof IommuError) {
      // Persistence failures are the operator's business: log them (refusals of bad input are not).
      if (err.code === 'UNAVAILABLE') req.log.error({ code: err.code }, err.message);
      return reply.code(err.status).send(err.toJSON());
    }
    if (hasZodFastifySchemaValidationErrors(err)) {
      const issues = err.validation.map((v) => ({ path: v.instancePath || '/', message: v.message, ...(v.params?.issue ? {} : {}) }));
      const where = err.validationContext ?? 'body';
      return reply.code(400).send(refusal('invalidInput', { what: where, issues, under: where }).toJSON());
    }
    const code = (err as FastifyError).code;
    if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return reply.code(415).send(refusal('contentTypeRefused', { contentType: req.headers['content-type'] ?? '' }).toJSON());
    }
    if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply.code(413).send(refusal('bodyTooLarge').toJSON());
    }
    const status = (err as FastifyError).statusCode ?? 500;
    if (status < 500) {
      return reply.code(status === 413 ? 413 : status === 415 ? 415 : 400).send(
        new IommuError(status === 413 ? 'PAYLOAD_TOO_LARGE' : status === 415 ? 'UNSUPPORTED_MEDIA_TYPE' : 'BAD_REQUEST', err.message).toJSON(),
      );
    }
    req.log.error({ err }, 'unexpected error');
    return reply.code(500).send({ error: { code: 'INTERNAL', message: 'internal error' } });
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(refusal('noRoute', { method: req.method, path: req.url.split('?')[0]! }).toJSON());
  });
}

/**
 * Errors Node's HTTP parser raises before any route (header block over the limit, a malformed request, a request
 * timeout), answered in the contract's error shape rather than Fastify's. Headers too large keep HTTP's own 431.
 */
export function clientErrorHandler(err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, reason, e] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large', refusal('headersTooLarge')]
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout', refusal('requestTimeout')]
        : [400, 'Bad Request', refusal('malformedHttp')];
  const body = JSON.stringify(e.toJSON());
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${reason}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy();
}
