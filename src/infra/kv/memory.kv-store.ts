import { checkStep, checkTtl, type KvStore, notAnInteger } from './kv-store.js';

interface Entry {
  value: string;
  /** Epoch ms after which the entry is gone; null keeps it until deleted. */
  expiresAt: number | null;
}

export interface MemoryKvStoreOptions {
  /** How often expired entries are dropped from memory. Default 60 s. */
  sweepIntervalMs?: number;
}

const INTEGER = /^-?\d+$/;

/**
 * The embedded KvStore: a Map in process memory, lost on restart (the port only holds state
 * that is cheap to lose). Expiry is checked on every read, so an expired key is never seen;
 * the periodic sweep only bounds memory for keys nobody reads again.
 */
export class MemoryKvStore implements KvStore {
  private readonly entries = new Map<string, Entry>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(options: MemoryKvStoreOptions = {}) {
    this.sweeper = setInterval(() => this.sweep(), options.sweepIntervalMs ?? 60_000);
    this.sweeper.unref();
  }

  /** Entries held, including expired ones the sweep has not dropped yet. */
  get size(): number {
    return this.entries.size;
  }

  async get(key: string): Promise<string | null> {
    return this.live(key)?.value ?? null;
  }

  async set(key: string, value: string, options: { ttlMs?: number } = {}): Promise<void> {
    // Like Redis SET: a write without a TTL makes the key persistent again.
    this.entries.set(key, { value, expiresAt: expiryOf(options.ttlMs) });
  }

  async add(key: string, value: string, options: { ttlMs?: number } = {}): Promise<boolean> {
    if (this.live(key) !== undefined) return false;
    this.entries.set(key, { value, expiresAt: expiryOf(options.ttlMs) });
    return true;
  }

  async delete(key: string): Promise<void> {
    this.entries.delete(key);
  }

  async increment(key: string, options: { by?: number; ttlMs?: number } = {}): Promise<number> {
    const by = checkStep(key, options.by);
    const entry = this.live(key);
    if (entry === undefined) {
      // The window starts here; later increments keep this expiry (fixed window).
      this.entries.set(key, { value: String(by), expiresAt: expiryOf(options.ttlMs) });
      return by;
    }
    if (!INTEGER.test(entry.value)) throw notAnInteger(key);
    const next = Number(entry.value) + by;
    entry.value = String(next);
    return next;
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.entries.clear();
  }

  /** The entry if it exists and has not expired; an expired one is dropped on the way. */
  private live(key: string): Entry | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt !== null && entry.expiresAt <= Date.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  private sweep(): void {
    const now = Date.now();
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt !== null && entry.expiresAt <= now) this.entries.delete(key);
    }
  }
}

function expiryOf(ttlMs: number | undefined): number | null {
  return ttlMs === undefined ? null : Date.now() + checkTtl(ttlMs);
}
