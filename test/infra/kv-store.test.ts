import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { MemoryKvStore } from '../../src/infra/kv/memory.kv-store.js';
import { kvStoreContract } from './kv-store.contract.js';

kvStoreContract('MemoryKvStore', async () => new MemoryKvStore());

describe('MemoryKvStore', () => {
  it('drops expired keys nobody reads again, so memory does not grow', async () => {
    const store = new MemoryKvStore({ sweepIntervalMs: 20 });
    try {
      for (let i = 0; i < 100; i++) await store.set(`k${i}`, 'v', { ttlMs: 10 });
      await store.set('kept', 'v');
      expect(store.size).toBe(101);
      await sleep(80);
      expect(store.size).toBe(1);
    } finally {
      await store.close();
    }
  });
});
