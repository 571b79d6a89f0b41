/** xorshift32: fast, seeded, and the same numbers on every run. */
export function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/** Deterministic pseudo-random bytes: incompressible like photos and video, fast enough for 100 MiB. */
export function pseudoRandomBytes(size: number, seed = 1): Buffer {
  const bytes = Buffer.alloc(size);
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, size >>> 2);
  const next = xorshift(seed);
  for (let i = 0; i < words.length; i++) words[i] = next();
  for (let i = words.length * 4; i < size; i++) bytes[i] = next() & 0xff;
  return bytes;
}
