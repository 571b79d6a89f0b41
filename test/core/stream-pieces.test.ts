import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { piecesOf } from '../../src/core/stream-pieces.js';

const collect = async (stream: Readable): Promise<Buffer[]> => {
  const pieces: Buffer[] = [];
  for await (const piece of piecesOf(stream)) pieces.push(piece);
  return pieces;
};

describe('piecesOf', () => {
  it('hands on the very pieces a stream emits, in order, none joined', async () => {
    const sent = Array.from({ length: 50 }, (_, i) => Buffer.alloc(1000 + i, i));
    const pieces = await collect(Readable.from(sent));
    expect(pieces).toHaveLength(50);
    for (const [i, piece] of pieces.entries()) expect(piece).toBe(sent[i]);
  });

  it('pauses a fast stream while the consumer is behind, and still gets every byte', async () => {
    const stream = new PassThrough();
    let paused = false;
    stream.on('pause', () => (paused = true));
    for (let i = 0; i < 100; i++) stream.write(Buffer.alloc(64, i));
    stream.end();
    let bytes = 0;
    for await (const piece of piecesOf(stream)) {
      bytes += piece.length;
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(bytes).toBe(6400);
    expect(paused).toBe(true);
  });

  it('throws what the stream fails with, and when it closes before its end', async () => {
    const failing = new PassThrough();
    setImmediate(() => {
      failing.write('some');
      failing.destroy(new Error('connection reset'));
    });
    await expect(collect(failing)).rejects.toThrow('connection reset');
    const cut = new PassThrough();
    setImmediate(() => cut.destroy());
    await expect(collect(cut)).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
  });

  it('ends at once for a stream already over, and destroys a stream its consumer leaves early', async () => {
    const over = Readable.from([Buffer.from('x')]);
    await collect(over);
    expect(await collect(over)).toEqual([]);
    const long = new PassThrough();
    long.write('first');
    for await (const piece of piecesOf(long)) {
      expect(piece.toString()).toBe('first');
      break;
    }
    expect(long.destroyed).toBe(true);
  });
});
