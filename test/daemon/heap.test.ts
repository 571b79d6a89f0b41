import { describe, expect, it } from 'vitest';
import { releaseMemory } from '../../src/daemon/heap.js';

const MiB = 1024 * 1024;

describe('releaseMemory', () => {
  it('gives the memory of a burst of garbage back to the system', () => {
    const before = process.memoryUsage().rss;
    // Small objects, as a walk of a folder leaves them: millions, all garbage once it is over.
    const made = (() => {
      const burst: { index: number; name: string }[] = [];
      for (let index = 0; index < 2_000_000; index++) burst.push({ index, name: `folder/file ${index}` });
      return burst.length;
    })();
    const grown = process.memoryUsage().rss - before;
    expect(made).toBe(2_000_000);
    expect(grown).toBeGreaterThan(100 * MiB); // else there is nothing to give back
    releaseMemory();
    // A regular full collection keeps most of it (V8 pools the pages it emptied).
    expect(process.memoryUsage().rss - before).toBeLessThan(grown * 0.3);
  });
});
