/**
 * Domain errors. Every error a user or a client can meet carries a stable code; the HTTP layer
 * maps codes to problem+json statuses and the CLI maps them to exit codes. Core and services know
 * nothing of either.
 */

/** Stable error codes, part of the public API: never rename one, only add. */
export type PvErrorCode =
  | 'PV_CONFIG_INVALID'
  | 'PV_INVALID_INPUT'
  | 'PV_PATH_INVALID'
  | 'PV_MANIFEST_INVALID'
  | 'PV_MANIFEST_TOO_LARGE'
  | 'PV_DELTA_INVALID'
  | 'PV_UPLOAD_NOT_FOUND'
  | 'PV_UPLOAD_CHUNK_NOT_EXPECTED'
  | 'PV_UPLOAD_CHUNK_HASH_MISMATCH'
  | 'PV_UPLOAD_CHUNK_TRUNCATED'
  | 'PV_UPLOAD_INCOMPLETE'
  | 'PV_UPLOAD_HASH_MISMATCH'
  | 'PV_UPLOAD_TOO_LARGE'
  | 'PV_PAYLOAD_TOO_LARGE'
  | 'PV_RANGE_NOT_SATISFIABLE'
  | 'PV_NOT_FOUND'
  | 'PV_CONFLICT'
  | 'PV_AUTH_REQUIRED'
  | 'PV_AUTH_INVALID_CREDENTIALS'
  | 'PV_AUTH_TOKEN_INVALID'
  | 'PV_AUTH_TOKEN_EXPIRED'
  | 'PV_FORBIDDEN'
  | 'PV_RATE_LIMITED'
  | 'PV_USER_EXISTS'
  | 'PV_BLOB_NOT_FOUND'
  | 'PV_INTEGRITY'
  | 'PV_MEDIA_UNPROCESSABLE'
  | 'PV_MEDIA_DECODER_MISSING'
  | 'PV_NOT_LOGGED_IN'
  | 'PV_SERVER_UNREACHABLE'
  | 'PV_BACKEND_UNREACHABLE'
  | 'PV_INTERNAL';

/** Base of every photovault error: a stable code, a message for people, and the fix if any. */
export class PvError extends Error {
  constructor(
    readonly code: PvErrorCode,
    message: string,
    readonly details: { fix?: string; [key: string]: unknown } = {},
  ) {
    super(message);
    this.name = 'PvError';
  }

  /** The fix a person can apply, when there is one. */
  get fix(): string | undefined {
    return this.details.fix;
  }
}

/** True when the value is a PvError, optionally with the given code. */
export function isPvError(value: unknown, code?: PvErrorCode): value is PvError {
  return value instanceof PvError && (code === undefined || value.code === code);
}

/** For .catch(): null when the error says the thing does not exist (PV_NOT_FOUND), else rethrows. */
export function notFoundAsNull(error: unknown): null {
  if (isPvError(error, 'PV_NOT_FOUND')) return null;
  throw error;
}

/**
 * The error for a configured backend (PostgreSQL, Redis, ...) that cannot be reached: it names the
 * backend and its URL, without the URL's password, since the message reaches logs and terminals.
 */
export function backendUnreachable(backend: string, url: string, cause: unknown): PvError {
  const reason = (cause instanceof Error ? cause.message || cause.name : String(cause)).replace(/\.+$/, '');
  return new PvError('PV_BACKEND_UNREACHABLE', `Cannot reach ${backend} at ${withoutPassword(url)}: ${reason}.`, {
    backend,
    cause,
    fix: `Check that ${backend} is running and reachable from this machine, and that the configured URL is right.`,
  });
}

/** The URL with its password, if any, replaced by ***. */
function withoutPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password === '') return url;
    parsed.password = '***';
    return parsed.toString();
  } catch {
    // Not a URL: it cannot be told apart from a password, so do not echo it.
    return '(an unparsable URL)';
  }
}
