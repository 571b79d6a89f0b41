import { PvError } from '../../core/errors.js';

/**
 * Key-value port for state that is cheap to lose or rebuild: rate limits, caches (sessions), presence.
 * Embedded: process memory. Cluster: Redis. TTLs are in milliseconds.
 */
export interface KvStore {
  get(key: string): Promise<string | null>;
  set(key: string, value: string, options?: { ttlMs?: number }): Promise<void>;
  /**
   * Sets key only if it is absent (or expired), atomically across the processes sharing the
   * store; true if it did. A cache fills with it, so that it never overwrites what a writer put
   * there meanwhile.
   */
  add(key: string, value: string, options?: { ttlMs?: number }): Promise<boolean>;
  delete(key: string): Promise<void>;
  /**
   * Adds `by` to the integer at key (absent counts as 0) and returns the new value. The TTL is
   * set when the key is created and not extended by later increments (a fixed window).
   */
  increment(key: string, options?: { by?: number; ttlMs?: number }): Promise<number>;
  close(): Promise<void>;
}

/** The TTL, if it is a positive number of milliseconds; every adapter rejects the same values. */
export function checkTtl(ttlMs: number): number {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw new PvError('PV_INVALID_INPUT', `A TTL must be a positive number of milliseconds, not ${ttlMs}.`);
  }
  return ttlMs;
}

/** The step of an increment (default 1), if it is a safe integer. */
export function checkStep(key: string, by = 1): number {
  if (!Number.isSafeInteger(by)) {
    throw new PvError('PV_INVALID_INPUT', `Cannot increment "${key}" by ${by}: not an integer.`);
  }
  return by;
}

/** The error for incrementing a value that is not an integer. */
export function notAnInteger(key: string): PvError {
  return new PvError('PV_INVALID_INPUT', `Cannot increment "${key}": its value is not an integer.`);
}
