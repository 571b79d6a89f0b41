import { describe, expect, it } from 'vitest';
import { inBlocks } from '../../src/core/byte-blocks.js';

async function* pieces(...sizes: number[]): AsyncGenerator<Uint8Array> {
  let next = 0;
  for (const size of sizes) yield Uint8Array.from({ length: size }, () => next++ % 256);
}

async function blocksOf(source: AsyncIterable<Uint8Array>, size: number): Promise<Buffer[]> {
  const blocks: Buffer[] = [];
  for await (const block of inBlocks(source, size)) blocks.push(block);
  return blocks;
}

describe('inBlocks', () => {
  it('regroups pieces of any sizes into whole blocks and a shorter last one, keeping every byte in order', async () => {
    const blocks = await blocksOf(pieces(3, 1, 9, 2, 10, 1), 4);
    expect(blocks.map((block) => block.length)).toEqual([4, 4, 4, 4, 4, 4, 2]);
    expect([...Buffer.concat(blocks)]).toEqual(Array.from({ length: 26 }, (_, i) => i));
  });

  it('yields blocks that stay intact while later ones are made', async () => {
    const blocks = await blocksOf(pieces(5, 5, 5), 4);
    expect(blocks.map((block) => [...block])).toEqual([
      [0, 1, 2, 3],
      [4, 5, 6, 7],
      [8, 9, 10, 11],
      [12, 13, 14],
    ]);
  });

  it('yields nothing for an empty source and one block for an exact fit', async () => {
    expect(await blocksOf(pieces(), 4)).toEqual([]);
    expect(await blocksOf(pieces(0, 0), 4)).toEqual([]);
    expect((await blocksOf(pieces(2, 2), 4)).map((block) => block.length)).toEqual([4]);
  });
});
