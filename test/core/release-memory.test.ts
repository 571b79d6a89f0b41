import { afterEach, describe, expect, it, vi } from 'vitest';
import { QuietRelease, releaseMemory } from '../../src/core/release-memory.js';

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

describe('QuietRelease', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('releases once, when no touch came for the quiet time, and again only after new touches', () => {
    vi.useFakeTimers();
    const release = vi.fn();
    const quiet = new QuietRelease(10_000, release);
    quiet.touch();
    vi.advanceTimersByTime(9_000);
    quiet.touch(); // activity goes on: the wait starts over
    vi.advanceTimersByTime(9_000);
    expect(release).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1_000);
    expect(release).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(60_000);
    expect(release).toHaveBeenCalledTimes(1);
    quiet.touch();
    vi.advanceTimersByTime(10_000);
    expect(release).toHaveBeenCalledTimes(2);
    quiet.touch();
    quiet.stop();
    vi.advanceTimersByTime(60_000);
    expect(release).toHaveBeenCalledTimes(2);
  });
});
