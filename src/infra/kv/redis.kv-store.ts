import { Redis, ReplyError } from 'ioredis';
import { backendUnreachable } from '../../core/errors.js';
import { checkStep, checkTtl, type KvStore, notAnInteger } from './kv-store.js';

export interface RedisKvStoreOptions {
  /** redis:// or rediss:// URL, credentials and database number included. */
  url: string;
  /** Put before every key, so several deployments (or test runs) can share one Redis. */
  keyPrefix: string;
  /** How long open() waits for Redis to answer before failing. Default 5 s. */
  connectTimeoutMs?: number;
  /**
   * Told about each failed reconnection attempt after open(), for the log. The commands that
   * fail meanwhile reject on their own; default: nothing is told.
   */
  onConnectionError?: (error: Error) => void;
}

/**
 * Opens the fixed window if the key is absent (SET NX with the TTL), then adds to it: in one
 * script, so no other client's increment can come between the two, and a crash cannot leave a
 * counter without its expiry. INCRBY keeps the TTL and fails on a value that is not an integer.
 * KEYS[1] the counter, ARGV[1] the step, ARGV[2] the TTL in ms or 0 for none.
 */
const INCREMENT_IN_WINDOW = `
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], '0', 'PX', ARGV[2], 'NX')
end
return redis.call('INCRBY', KEYS[1], ARGV[1])
`;

// A command waits at most this long for its reply, and at most this many reconnection attempts,
// so a dead Redis fails requests within seconds instead of queueing them forever.
const COMMAND_TIMEOUT_MS = 5_000;
const MAX_RETRIES_PER_REQUEST = 3;
const MAX_RECONNECT_DELAY_MS = 2_000;

type ScriptedRedis = Redis & { incrementInWindow(key: string, by: number, ttlMs: number): Promise<number> };

/**
 * The cluster KvStore: every server process shares the counters and presence in one Redis.
 * Keys are namespaced by keyPrefix (ioredis adds it to every key, the script's included).
 */
export class RedisKvStore implements KvStore {
  private constructor(
    private readonly redis: ScriptedRedis,
    private readonly url: string,
  ) {}

  /** Connects to Redis, failing at once with an error naming the URL when it does not answer. */
  static async open(options: RedisKvStoreOptions): Promise<RedisKvStore> {
    const timeoutMs = options.connectTimeoutMs ?? 5_000;
    let ready = false;
    let lastError: Error | null = null;
    const redis = new Redis(options.url, {
      keyPrefix: options.keyPrefix,
      lazyConnect: true,
      connectTimeout: timeoutMs,
      commandTimeout: COMMAND_TIMEOUT_MS,
      maxRetriesPerRequest: MAX_RETRIES_PER_REQUEST,
      // ioredis retries forever by default: not before the first connection (open() must fail
      // fast), with a capped backoff after it (a restarted Redis is picked up again).
      retryStrategy: (attempt) => (ready ? Math.min(attempt * 200, MAX_RECONNECT_DELAY_MS) : null),
      connectionName: 'photovault',
    }) as ScriptedRedis;
    redis.defineCommand('incrementInWindow', { numberOfKeys: 1, lua: INCREMENT_IN_WINDOW });
    redis.on('error', (error: Error) => {
      lastError = error;
      if (ready) options.onConnectionError?.(error);
    });
    // connectTimeout bounds the TCP connection; this bounds the whole handshake, for a peer
    // that accepts connections but never answers.
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([redis.connect(), deadline]);
    } catch (error) {
      redis.disconnect();
      // connect() rejects with a bare "Connection is closed."; the reason came as an error event.
      throw backendUnreachable('Redis', options.url, lastError ?? error);
    } finally {
      clearTimeout(timer);
    }
    ready = true;
    return new RedisKvStore(redis, options.url);
  }

  get(key: string): Promise<string | null> {
    return this.command(key, () => this.redis.get(key));
  }

  async set(key: string, value: string, options: { ttlMs?: number } = {}): Promise<void> {
    // A SET without PX clears any TTL the key had, as the port asks.
    const ttlMs = options.ttlMs === undefined ? undefined : Math.ceil(checkTtl(options.ttlMs));
    await this.command(key, () => (ttlMs === undefined ? this.redis.set(key, value) : this.redis.set(key, value, 'PX', ttlMs)));
  }

  async add(key: string, value: string, options: { ttlMs?: number } = {}): Promise<boolean> {
    const ttlMs = options.ttlMs === undefined ? undefined : Math.ceil(checkTtl(options.ttlMs));
    const reply = await this.command(key, () =>
      ttlMs === undefined ? this.redis.set(key, value, 'NX') : this.redis.set(key, value, 'PX', ttlMs, 'NX'),
    );
    return reply === 'OK';
  }

  async delete(key: string): Promise<void> {
    await this.command(key, () => this.redis.unlink(key));
  }

  increment(key: string, options: { by?: number; ttlMs?: number } = {}): Promise<number> {
    const by = checkStep(key, options.by);
    const ttlMs = options.ttlMs === undefined ? 0 : Math.ceil(checkTtl(options.ttlMs));
    return this.command(key, () => this.redis.incrementInWindow(key, by, ttlMs));
  }

  async close(): Promise<void> {
    try {
      await this.redis.quit();
    } catch {
      // QUIT fails when the connection is already gone; disconnect() below ends it either way.
    }
    this.redis.disconnect();
  }

  /** Runs a command, turning Redis's errors into the port's: bad values and an unreachable Redis. */
  private async command<T>(key: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      if (error instanceof ReplyError) {
        if (/not an integer|out of range/.test((error as Error).message)) throw notAnInteger(key);
        throw error;
      }
      // Timeouts, reconnection limits and closed connections: Redis itself is the problem.
      throw backendUnreachable('Redis', this.url, error);
    }
  }
}
