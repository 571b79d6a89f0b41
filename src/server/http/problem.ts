import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { type PvErrorCode, isPvError } from '../../core/errors.js';
import type { Problem } from '../../core/protocol.js';

/** HTTP status of each error code; codes not listed are server faults (500). */
const STATUS: Partial<Record<PvErrorCode, number>> = {
  PV_INVALID_INPUT: 400,
  PV_PATH_INVALID: 400,
  PV_MANIFEST_INVALID: 400,
  PV_DELTA_INVALID: 400,
  PV_UPLOAD_CHUNK_TRUNCATED: 400,
  PV_AUTH_REQUIRED: 401,
  PV_AUTH_INVALID_CREDENTIALS: 401,
  PV_AUTH_TOKEN_INVALID: 401,
  PV_AUTH_TOKEN_EXPIRED: 401,
  PV_FORBIDDEN: 403,
  PV_NOT_FOUND: 404,
  PV_UPLOAD_NOT_FOUND: 404,
  PV_CONFLICT: 409,
  PV_USER_EXISTS: 409,
  PV_UPLOAD_CHUNK_NOT_EXPECTED: 409,
  PV_UPLOAD_INCOMPLETE: 409,
  PV_MANIFEST_TOO_LARGE: 413,
  PV_UPLOAD_TOO_LARGE: 413,
  PV_UPLOAD_CHUNK_HASH_MISMATCH: 422,
  PV_UPLOAD_HASH_MISMATCH: 422,
  PV_RATE_LIMITED: 429,
  PV_BACKEND_UNREACHABLE: 503,
};

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Content Too Large',
  416: 'Range Not Satisfiable',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** Sends an RFC 9457 problem+json body. */
export function sendProblem(reply: FastifyReply, status: number, code: string, detail: string, extra: Record<string, unknown> = {}) {
  const problem: Problem = { type: `urn:photovault:error:${code}`, title: TITLES[status] ?? 'Error', status, detail, code, ...extra };
  return reply.status(status).type('application/problem+json').send(problem);
}

/** Fastify error handler: domain errors by code, validation and framework errors by status, the rest as 500 without internals. */
export function problemErrorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  if (isPvError(error)) {
    const status = STATUS[error.code] ?? 500;
    if (status >= 500) request.log.error({ err: error }, 'request failed');
    const { fix, ...details } = error.details;
    if (error.code === 'PV_RATE_LIMITED') reply.header('retry-after', String(details.retryAfterSeconds ?? 60));
    // Only the fix and the missing-chunk list are meant for clients; other details stay in logs.
    const extra: Record<string, unknown> = {};
    if (fix) extra.fix = fix;
    if (details.missing) extra.missing = details.missing;
    return sendProblem(reply, status, error.code, error.message, extra);
  }
  if (error.validation) return sendProblem(reply, 400, 'PV_INVALID_INPUT', `Invalid request: ${error.message}.`);
  if (error.statusCode && error.statusCode < 500) {
    const code = error.statusCode === 413 ? 'PV_PAYLOAD_TOO_LARGE' : 'PV_INVALID_INPUT';
    return sendProblem(reply, error.statusCode, code, error.message);
  }
  request.log.error({ err: error }, 'request failed');
  return sendProblem(reply, 500, 'PV_INTERNAL', 'The server failed to handle the request; the error is in its log.');
}
