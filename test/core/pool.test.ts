import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { Feed, inGroups, inSizedGroups, runPool } from '../../src/core/pool.js';

describe('runPool', () => {
  it('runs every item with at most limit in flight, and throws the first failure once the rest settle', async () => {
    let inFlight = 0;
    let most = 0;
    const done: number[] = [];
    await runPool([1, 2, 3, 4, 5, 6], 2, async (item) => {
      most = Math.max(most, ++inFlight);
      await nextTurn();
      done.push(item);
      inFlight--;
    });
    expect(most).toBe(2);
    expect(done.sort()).toEqual([1, 2, 3, 4, 5, 6]);

    const settled: number[] = [];
    const failing = runPool([1, 2, 3, 4], 2, async (item) => {
      await nextTurn();
      if (item === 1) throw new Error('one failed');
      settled.push(item);
    });
    await expect(failing).rejects.toThrow('one failed');
    // 2 was in flight beside 1 and finished; nothing started after the failure.
    expect(settled).toEqual([2]);
  });

  it('takes items from a feed as they are pushed, until it ends', async () => {
    const feed = new Feed<number>();
    const seen: number[] = [];
    const running = runPool(feed, 3, async (item) => {
      seen.push(item);
    });
    feed.push(1);
    await nextTurn();
    expect(seen).toEqual([1]);
    feed.push(2);
    feed.push(3);
    await nextTurn();
    expect(seen).toEqual([1, 2, 3]);
    feed.end();
    await running;
    expect(seen).toEqual([1, 2, 3]);
  });
});

describe('inGroups', () => {
  it('groups items by size, the last group smaller, each group as soon as it is full', async () => {
    const feed = new Feed<number>();
    const groups: number[][] = [];
    const grouping = (async () => {
      for await (const group of inGroups(feed, 2)) groups.push(group);
    })();
    feed.push(1);
    await nextTurn();
    expect(groups).toEqual([]);
    feed.push(2);
    await nextTurn();
    expect(groups).toEqual([[1, 2]]);
    feed.push(3);
    feed.end();
    await grouping;
    expect(groups).toEqual([[1, 2], [3]]);
  });

  it('gives nothing for no items', async () => {
    const groups: number[][] = [];
    for await (const group of inGroups([], 4)) groups.push(group);
    expect(groups).toEqual([]);
  });
});

describe('inSizedGroups', () => {
  it.each([
    { sizes: [], groups: [] },
    { sizes: [2, 3, 3], groups: [[2, 3, 3]] },
    { sizes: [4, 4, 4], groups: [[4, 4], [4]] },
    { sizes: [2, 20, 2], groups: [[2], [20], [2]] },
    {
      sizes: [1, 1, 1, 1, 1],
      groups: [
        [1, 1, 1],
        [1, 1],
      ],
    },
  ])('groups $sizes by at most 3 items and 8 bytes, a larger item alone: $groups', ({ sizes, groups }) => {
    expect(inSizedGroups(sizes, (size) => size, { maxItems: 3, maxBytes: 8 })).toEqual(groups);
  });
});
