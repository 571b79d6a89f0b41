import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { describe } from 'vitest';

/**
 * The machine's Redis for the suites of Redis-backed adapters (PHOTOVAULT_TEST_REDIS_URL, default
 * redis://127.0.0.1:6379). Outside CI a missing Redis skips those suites with a message; in CI
 * (CI=true) it fails, like PostgreSQL in databases.ts.
 */
export const REDIS_TEST_URL = process.env.PHOTOVAULT_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

async function redisReachable(): Promise<boolean> {
  const redis = new Redis(REDIS_TEST_URL, { lazyConnect: true, connectTimeout: 2000, retryStrategy: () => null });
  redis.on('error', () => {});
  try {
    await redis.connect();
    await redis.ping();
    return true;
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

const redisAvailable = await redisReachable();
if (!redisAvailable && process.env.CI) {
  throw new Error(`Redis is not reachable at ${REDIS_TEST_URL}; CI must run the Redis suites (scripts/services.sh starts it).`);
}

/** Defines a suite that needs Redis; skipped (and saying so) only outside CI when Redis is not reachable. */
export function describeWithRedis(name: string, suite: () => void): void {
  if (redisAvailable) describe(name, suite);
  else describe.skip(`${name} (skipped: Redis not reachable at ${REDIS_TEST_URL}, and not in CI)`, suite);
}

/** A key prefix no other run uses, and how to delete every key under it afterwards. */
export function testKeyPrefix(): { keyPrefix: string; deleteKeys(): Promise<void> } {
  const keyPrefix = `pv-test:${randomBytes(6).toString('hex')}:`;
  return { keyPrefix, deleteKeys: () => deleteRedisKeys(keyPrefix) };
}

/** Deletes every key under the prefix (hex, letters, digits, '-' and ':' only: no glob characters to escape in MATCH). */
export async function deleteRedisKeys(keyPrefix: string): Promise<void> {
  const redis = new Redis(REDIS_TEST_URL);
  try {
    for await (const keys of redis.scanStream({ match: `${keyPrefix}*`, count: 500 }) as AsyncIterable<string[]>) {
      if (keys.length > 0) await redis.unlink(...keys);
    }
  } finally {
    redis.disconnect();
  }
}
