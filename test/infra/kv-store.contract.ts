import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { KvStore } from '../../src/infra/kv/kv-store.js';

/**
 * The behaviour every KvStore adapter must have. `create` returns a fresh, open store; the suite
 * closes it after each case. Keys carry a random prefix so runs against a shared server
 * (Redis) never see each other's keys.
 */
export function kvStoreContract(name: string, create: () => Promise<KvStore>): void {
  describe(`KvStore contract: ${name}`, () => {
    let store: KvStore;
    let prefix: string;
    const key = (suffix: string) => `${prefix}:${suffix}`;

    beforeEach(async () => {
      store = await create();
      prefix = `kv-contract:${randomUUID()}`;
    });

    afterEach(async () => {
      await store.close();
    });

    it('returns null for a key that was never set', async () => {
      expect(await store.get(key('absent'))).toBeNull();
    });

    it('returns what was set and forgets it once deleted', async () => {
      await store.set(key('a'), 'alpha');
      expect(await store.get(key('a'))).toBe('alpha');
      await store.delete(key('a'));
      expect(await store.get(key('a'))).toBeNull();
    });

    it('treats deleting an absent key as a no-op', async () => {
      await expect(store.delete(key('absent'))).resolves.toBeUndefined();
    });

    it('overwrites a value, and an overwrite without a TTL makes the key persistent', async () => {
      await store.set(key('a'), 'first', { ttlMs: 50 });
      await store.set(key('a'), 'second');
      expect(await store.get(key('a'))).toBe('second');
      await sleep(100);
      expect(await store.get(key('a'))).toBe('second');
    });

    it('keeps keys apart', async () => {
      await store.set(key('a'), 'alpha');
      await store.set(key('b'), 'beta');
      await store.delete(key('a'));
      expect(await store.get(key('b'))).toBe('beta');
    });

    // TTLs here leave hundreds of milliseconds for a round trip to the server on a loaded machine
    // (CI shares its cores): a pause of that length is not rare there.
    it('expires a key after its TTL', async () => {
      await store.set(key('a'), 'alpha', { ttlMs: 500 });
      expect(await store.get(key('a'))).toBe('alpha');
      await sleep(600);
      expect(await store.get(key('a'))).toBeNull();
    });

    it('adds a key only where it is absent or expired, saying whether it did', async () => {
      expect(await store.add(key('cache'), 'first', { ttlMs: 60_000 })).toBe(true);
      expect(await store.add(key('cache'), 'second', { ttlMs: 60_000 })).toBe(false);
      expect(await store.get(key('cache'))).toBe('first');
      await store.set(key('cache'), 'written');
      expect(await store.add(key('cache'), 'third')).toBe(false);
      expect(await store.get(key('cache'))).toBe('written');
      expect(await store.add(key('short'), 'one', { ttlMs: 500 })).toBe(true);
      await sleep(600);
      expect(await store.add(key('short'), 'two')).toBe(true);
      expect(await store.get(key('short'))).toBe('two');
      await expect(store.add(key('bad'), 'x', { ttlMs: 0 })).rejects.toMatchObject({ code: 'PV_INVALID_INPUT' });
    });

    it('increments an absent key from zero, by one or by the given step', async () => {
      expect(await store.increment(key('one'))).toBe(1);
      expect(await store.increment(key('five'), { by: 5 })).toBe(5);
      expect(await store.increment(key('five'), { by: -2 })).toBe(3);
      expect(await store.get(key('five'))).toBe('3');
    });

    it('increments an integer that was set as a string', async () => {
      await store.set(key('n'), '41');
      expect(await store.increment(key('n'))).toBe(42);
    });

    it('rejects incrementing a value that is not an integer', async () => {
      await store.set(key('word'), 'hello');
      await expect(store.increment(key('word'))).rejects.toThrow();
    });

    it('counts in a fixed window: later increments do not extend the TTL', async () => {
      const ttlMs = 1000;
      expect(await store.increment(key('window'), { ttlMs })).toBe(1);
      const windowOpenedBy = Date.now();
      await sleep(300);
      // Still inside the first window, so this adds to it instead of starting a new one.
      expect(await store.increment(key('window'), { ttlMs })).toBe(2);
      // Past the first window's end (<= windowOpenedBy + 1000) but before the end a sliding
      // window would have had (>= windowOpenedBy + 1300).
      await sleep(Math.max(0, windowOpenedBy + ttlMs + 100 - Date.now()));
      expect(await store.get(key('window'))).toBeNull();
      expect(await store.increment(key('window'), { ttlMs })).toBe(1);
    });

    it('gives concurrent increments of one key distinct results that add up', async () => {
      const results = await Promise.all(Array.from({ length: 25 }, () => store.increment(key('hot'))));
      expect([...results].sort((x, y) => x - y)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
      expect(await store.get(key('hot'))).toBe('25');
    });
  });
}
