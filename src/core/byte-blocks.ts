/**
 * The bytes of source regrouped into blocks of exactly blockSize (the last one may be shorter),
 * for consumers that pay per write: an S3 request per staged piece or multipart part. Blocks
 * are views of buffers nothing writes to again, so a consumer may keep them.
 */
export async function* inBlocks(source: AsyncIterable<Uint8Array>, blockSize: number): AsyncGenerator<Buffer> {
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  for await (const piece of source) {
    pending.push(piece);
    pendingBytes += piece.length;
    if (pendingBytes < blockSize) continue;
    const joined = Buffer.concat(pending, pendingBytes);
    let at = 0;
    for (; joined.length - at >= blockSize; at += blockSize) yield joined.subarray(at, at + blockSize);
    pending = at < joined.length ? [joined.subarray(at)] : [];
    pendingBytes = joined.length - at;
  }
  if (pendingBytes > 0) yield Buffer.concat(pending, pendingBytes);
}
