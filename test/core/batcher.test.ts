import { describe, expect, it } from 'vitest';
import { Batcher } from '../../src/core/batcher.js';

/** A batcher whose runs wait until released, recording the batches it was given. */
function gatedBatcher(maxBatch?: number) {
  const batches: number[][] = [];
  let release: () => void = () => undefined;
  const batcher = new Batcher<number, number>(async (items) => {
    batches.push(items);
    await new Promise<void>((resolve) => (release = resolve));
    return items.map((item) => (item < 0 ? { error: new Error(`bad ${item}`) } : { value: item * 10 }));
  }, maxBatch);
  return { batcher, batches, release: () => release() };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('Batcher', () => {
  it('runs the items added in one turn together, and gathers those added meanwhile into the next batch', async () => {
    const { batcher, batches, release } = gatedBatcher();
    const first = batcher.add(1);
    const second = batcher.add(2);
    await tick();
    expect(batches).toEqual([[1, 2]]);
    const rest = [batcher.add(3), batcher.add(4), batcher.add(5)];
    release();
    expect(await Promise.all([first, second])).toEqual([10, 20]);
    await tick();
    expect(batches).toEqual([
      [1, 2],
      [3, 4, 5],
    ]);
    release();
    expect(await Promise.all(rest)).toEqual([30, 40, 50]);
  });

  it('fails only the items whose outcome is an error', async () => {
    const { batcher, release } = gatedBatcher();
    const results = [batcher.add(5), batcher.add(-1), batcher.add(6)].map((promise) =>
      promise.then(
        (value) => ({ value }),
        (error: Error) => ({ error: error.message }),
      ),
    );
    await tick();
    release();
    expect(await Promise.all(results)).toEqual([{ value: 50 }, { error: 'bad -1' }, { value: 60 }]);
  });

  it('fails every item of a batch whose run throws, and runs the next batch', async () => {
    let calls = 0;
    const batcher = new Batcher<string, string>(async (items) => {
      calls++;
      if (calls === 1) throw new Error('transaction failed');
      return items.map((item) => ({ value: item.toUpperCase() }));
    });
    const failing = [batcher.add('a'), batcher.add('b')].map((promise) => promise.catch((error: Error) => error.message));
    expect(await Promise.all(failing)).toEqual(['transaction failed', 'transaction failed']);
    expect(await batcher.add('c')).toBe('C');
  });

  it('runs at most maxBatch items in one batch', async () => {
    const { batcher, batches, release } = gatedBatcher(2);
    const all = [1, 2, 3, 4, 5].map((n) => batcher.add(n));
    for (let i = 0; i < 3; i++) {
      await tick();
      release();
    }
    expect(await Promise.all(all)).toEqual([10, 20, 30, 40, 50]);
    expect(batches).toEqual([[1, 2], [3, 4], [5]]);
  });
});
