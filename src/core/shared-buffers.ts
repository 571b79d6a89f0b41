/** How a SharedBuffers pool sizes and keeps its buffers. */
export interface SharedBufferSizes {
  /** The smallest buffer made, so that one serves many sizes. */
  minBytes: number;
  /** Buffers up to this long are kept for reuse; longer ones are left to the collector. */
  keptBytes: number;
  /** How many are kept at most. */
  kept: number;
}

/**
 * Buffers in SharedArrayBuffers, so that a worker thread can read them in place, reused: a fresh
 * megabyte for each use counts as external memory to V8, which answers a stream of them with
 * full collections. A buffer taken is the caller's until given back; it starts at the start of
 * its SharedArrayBuffer.
 */
export class SharedBuffers {
  readonly #spare: Buffer[] = [];

  constructor(private readonly sizes: SharedBufferSizes) {}

  /** A buffer of at least length bytes; its content is whatever it last held. */
  take(length: number): Buffer {
    const at = this.#spare.findIndex((buffer) => buffer.length >= length);
    if (at >= 0) return this.#spare.splice(at, 1)[0]!;
    const { minBytes, keptBytes } = this.sizes;
    return Buffer.from(new SharedArrayBuffer(length <= keptBytes ? Math.max(length, minBytes) : length));
  }

  give(buffer: Buffer): void {
    if (buffer.length <= this.sizes.keptBytes && this.#spare.length < this.sizes.kept) this.#spare.push(buffer);
  }
}
