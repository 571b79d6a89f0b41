import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { PvError } from '../../core/errors.js';
import { STAGING_DIR } from './blob-checks.js';
import type { Bucket } from './blob-store.js';
import { listing, reaching, type S3BlobStore, type S3Target } from './s3.blob-store.js';
import { assertUploadId, isUploadId, type StagingArea } from './staging-area.js';

/** Offsets in keys have this many digits (2^53 has 16), so that S3's key order is offset order. */
const OFFSET_DIGITS = 16;
const OFFSET = new RegExp(`^\\d{${OFFSET_DIGITS}}$`);
/**
 * The largest staged object. The objects that cover a byte then start less than this before it,
 * which bounds the listing a read needs, and what a read or an assembly holds per object.
 */
const MAX_PIECE = 4 * 1024 * 1024;
/** Requests in flight for one write, read or assembly. */
const CONCURRENCY = 8;
/** S3 deletes at most this many keys per request. */
const DELETE_BATCH = 1000;
const ZEROS = Buffer.alloc(1024 * 1024);

/** The part of a staged object that reads, [from, to): from where the objects before it end (a lower offset wins an overlap). */
interface Segment {
  key: string;
  /** Where the object starts in the content. */
  start: number;
  from: number;
  to: number;
}

/**
 * A StagingArea that every server process on the same S3 store shares, since the chunk PUTs of one
 * upload may reach different processes. Each write is stored as objects `.staging/<uploadId>/<offset>`
 * in the `uploads` bucket (out of the BlobStore's key space, which reserves `.staging`), the offset
 * zero-padded so that a listing, in S3's UTF-8 binary key order, returns an upload's pieces in the
 * order of its content. Reading the content walks that listing, zeros where nothing was written,
 * fetching a few pieces ahead: memory stays bounded whatever the size of the upload. Promotion
 * streams it into a BlobStore put, which checks sha256 and size before it makes the object.
 */
export class S3StagingArea implements StagingArea {
  private readonly target: S3Target;

  constructor(private readonly blobs: S3BlobStore) {
    this.target = blobs.bucketOf('uploads');
  }

  async write(uploadId: string, bytes: Uint8Array, offsets: number[]): Promise<void> {
    const dir = dirOf(uploadId);
    for (const offset of offsets) assertPosition(offset + bytes.length, 'offset', offset);
    const whole = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    const pieces: { key: string; bytes: Buffer }[] = [];
    for (const offset of offsets) {
      for (let at = 0; at < whole.length; at += MAX_PIECE)
        pieces.push({ key: dir + offsetKey(offset + at), bytes: whole.subarray(at, at + MAX_PIECE) });
    }
    const { client, name } = this.target;
    await eachLimited(pieces, ({ key, bytes }) => reaching(this.target, () => client.putObject(name, key, bytes)));
  }

  async read(uploadId: string, offset: number, length: number): Promise<Buffer> {
    assertUploadId(uploadId);
    assertPosition(offset, 'offset', offset);
    assertPosition(offset + length, 'length', length);
    const bytes = Buffer.alloc(length);
    const end = offset + length;
    const copies: { key: string; source: number; target: number; length: number }[] = [];
    for await (const segment of this.segments(uploadId, Math.max(0, offset - MAX_PIECE + 1))) {
      if (segment.start >= end) break;
      const [from, to] = [Math.max(segment.from, offset), Math.min(segment.to, end)];
      if (from < to) copies.push({ key: segment.key, source: from - segment.start, target: from - offset, length: to - from });
    }
    await eachLimited(copies, async (copy) => {
      (await this.fetch(copy.key)).copy(bytes, copy.target, copy.source, copy.source + copy.length);
    });
    return bytes;
  }

  async digest(uploadId: string): Promise<{ sha256: string; size: number }> {
    const hash = createHash('sha256');
    let size = 0;
    for await (const bytes of this.content(uploadId)) {
      hash.update(bytes);
      size += bytes.length;
    }
    return { sha256: hash.digest('hex'), size };
  }

  async promote(uploadId: string, bucket: Bucket, key: string, expected: { sha256: string; size: number }): Promise<void> {
    await this.blobs.put(bucket, key, this.content(uploadId), expected);
    await this.discard(uploadId);
  }

  async discard(uploadId: string): Promise<void> {
    const dir = dirOf(uploadId);
    let batch: string[] = [];
    for await (const item of listing(this.target, dir, true)) {
      if (item.name !== undefined) batch.push(item.name);
      if (batch.length === DELETE_BATCH) {
        await this.remove(batch);
        batch = [];
      }
    }
    if (batch.length > 0) await this.remove(batch);
  }

  async *uploads(): AsyncIterable<string> {
    const root = `${STAGING_DIR}/`;
    for await (const item of listing(this.target, root, false)) {
      const uploadId = item.prefix?.slice(root.length, -1);
      if (isUploadId(uploadId)) yield uploadId;
    }
  }

  /** The S3BlobStore owns the clients. */
  async close(): Promise<void> {}

  /** The upload's content from its first byte to the furthest written, zeros in holes. */
  private async *content(uploadId: string): AsyncGenerator<Buffer> {
    const ahead: { hole: number; bytes: Promise<Buffer>; skip: number; length: number }[] = [];
    let position = 0;
    for await (const segment of this.segments(uploadId)) {
      const bytes = this.fetch(segment.key);
      // Awaited in turn below; until then (or if the reader stops early) a failure is only recorded.
      bytes.catch(() => {});
      ahead.push({ hole: segment.from - position, bytes, skip: segment.from - segment.start, length: segment.to - segment.from });
      position = segment.to;
      if (ahead.length === CONCURRENCY) yield* emit(ahead.shift()!);
    }
    for (const next of ahead) yield* emit(next);
  }

  /** The readable part of each staged object of the upload that starts at or after from, in order. */
  private async *segments(uploadId: string, from = 0): AsyncGenerator<Segment> {
    const dir = dirOf(uploadId);
    const startAfter = from > 0 ? dir + offsetKey(from - 1) : '';
    let reach = 0;
    for await (const item of listing(this.target, dir, true, startAfter)) {
      const name = item.name?.slice(dir.length);
      if (name === undefined || !OFFSET.test(name)) continue;
      const start = Number(name);
      const end = start + item.size;
      if (end > reach) yield { key: item.name!, start, from: Math.max(start, reach), to: end };
      reach = Math.max(reach, end);
    }
  }

  private async fetch(key: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    const { client, name } = this.target;
    for await (const chunk of (await reaching(this.target, () => client.getObject(name, key))) as Readable) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  private async remove(keys: string[]): Promise<void> {
    const { client, name } = this.target;
    const failures = (await reaching(this.target, () => client.removeObjects(name, keys))).filter((failure) => failure != null);
    if (failures.length > 0) throw new Error(`S3 kept ${failures.length} staged objects: ${JSON.stringify(failures[0])}`);
  }
}

async function* emit(next: { hole: number; bytes: Promise<Buffer>; skip: number; length: number }): AsyncGenerator<Buffer> {
  for (let left = next.hole; left > 0; left -= ZEROS.length) yield ZEROS.subarray(0, Math.min(left, ZEROS.length));
  const bytes = await next.bytes;
  yield bytes.subarray(next.skip, next.skip + next.length);
}

function dirOf(uploadId: string): string {
  assertUploadId(uploadId);
  return `${STAGING_DIR}/${uploadId}/`;
}

function offsetKey(offset: number): string {
  return String(offset).padStart(OFFSET_DIGITS, '0');
}

/** Throws PV_INVALID_INPUT unless value is a whole number >= 0 and position a byte position a key can hold. */
function assertPosition(position: number, name: string, value: number): void {
  if (!(Number.isSafeInteger(value) && value >= 0 && Number.isSafeInteger(position))) {
    throw new PvError('PV_INVALID_INPUT', `Invalid staging ${name} ${value}.`);
  }
}

/** Runs work on every item, at most CONCURRENCY at a time; throws the first failure once none is running. */
async function eachLimited<T>(items: readonly T[], work: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      try {
        await work(items[next++]!);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  const outcomes = await Promise.allSettled(Array.from({ length: Math.min(CONCURRENCY, items.length) }, worker));
  const failure = outcomes.find((outcome) => outcome.status === 'rejected');
  if (failure) throw failure.reason;
}
