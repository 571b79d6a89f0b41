import type { Readable } from 'node:stream';

/** Pieces queued before the stream is paused until the consumer catches up. */
const QUEUED_PIECES_MAX = 16;

/**
 * The pieces a stream emits, as they arrive. A Readable's own async iterator joins whatever is
 * buffered into one new Buffer at each step, a copy of every byte and the garbage of it (a
 * tenth of a second per 500 MiB, and more collections); this hands on the pieces themselves,
 * pausing the stream while the consumer is behind. A stream that closes without ending throws;
 * a consumer that stops early destroys the stream, as the async iterator does.
 */
export async function* piecesOf(stream: Readable): AsyncGenerator<Buffer> {
  const queued: Buffer[] = [];
  let ended = false;
  let failure: { error: unknown } | null = null;
  let wake: (() => void) | null = null;
  const onData = (piece: Buffer) => {
    queued.push(piece);
    if (queued.length >= QUEUED_PIECES_MAX) stream.pause();
    wake?.();
  };
  const onEnd = () => {
    ended = true;
    wake?.();
  };
  const onError = (error: unknown) => {
    failure ??= { error };
    wake?.();
  };
  const onClose = () => {
    if (!ended) onError(Object.assign(new Error('The stream closed before its end.'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
  };
  // A stream that is over already emits nothing more.
  if (stream.readableEnded) ended = true;
  else if (stream.errored) onError(stream.errored);
  else if (stream.destroyed) onClose();
  stream.on('data', onData).once('end', onEnd).once('error', onError).once('close', onClose);
  try {
    for (;;) {
      const piece = queued.shift();
      if (piece) {
        if (stream.isPaused() && queued.length < QUEUED_PIECES_MAX / 2) stream.resume();
        yield piece;
        continue;
      }
      if (failure) throw (failure as { error: unknown }).error;
      if (ended) return;
      await new Promise<void>((resolve) => (wake = resolve));
      wake = null;
    }
  } finally {
    stream.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
    if (!ended) stream.destroy();
  }
}
