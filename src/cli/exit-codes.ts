import type { PvErrorCode } from '../core/errors.js';

/**
 * Exit codes scripts can rely on (documented in the README). Never renumber; only add.
 */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  auth: 3,
  notFound: 4,
  conflict: 5,
  unreachable: 6,
  integrity: 7,
  partial: 8,
} as const;

const BY_CODE: Partial<Record<PvErrorCode, number>> = {
  PV_CONFIG_INVALID: EXIT.usage,
  PV_INVALID_INPUT: EXIT.usage,
  PV_PATH_INVALID: EXIT.usage,
  PV_USER_EXISTS: EXIT.conflict,
  PV_NOT_LOGGED_IN: EXIT.auth,
  PV_AUTH_REQUIRED: EXIT.auth,
  PV_AUTH_INVALID_CREDENTIALS: EXIT.auth,
  PV_AUTH_TOKEN_INVALID: EXIT.auth,
  PV_AUTH_TOKEN_EXPIRED: EXIT.auth,
  PV_FORBIDDEN: EXIT.auth,
  PV_RATE_LIMITED: EXIT.auth,
  PV_NOT_FOUND: EXIT.notFound,
  PV_CONFLICT: EXIT.conflict,
  PV_SERVER_UNREACHABLE: EXIT.unreachable,
  PV_BACKEND_UNREACHABLE: EXIT.unreachable,
  PV_INTEGRITY: EXIT.integrity,
  PV_UPLOAD_HASH_MISMATCH: EXIT.integrity,
  PV_UPLOAD_CHUNK_HASH_MISMATCH: EXIT.integrity,
};

/** The exit code for an error code. */
export function exitCodeFor(code: PvErrorCode): number {
  return BY_CODE[code] ?? EXIT.failure;
}
