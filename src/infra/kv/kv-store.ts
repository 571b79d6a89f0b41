/**
 * Key-value port for state that is cheap to lose or rebuild: rate limits, caches, presence.
 * Embedded: process memory. Cluster: Redis. TTLs are in milliseconds.
 */
export interface KvStore {
  get(key: string): Promise<string | null>;
  set(key: string, value: string, options?: { ttlMs?: number }): Promise<void>;
  delete(key: string): Promise<void>;
  /**
   * Adds `by` to the integer at key (absent counts as 0) and returns the new value. The TTL is
   * set when the key is created and not extended by later increments (a fixed window).
   */
  increment(key: string, options?: { by?: number; ttlMs?: number }): Promise<number>;
  close(): Promise<void>;
}
