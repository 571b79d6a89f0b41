import { createHash } from 'node:crypto';
import { type Bucket, TIER_BUCKETS } from '../../core/buckets.js';
import { isPvError } from '../../core/errors.js';
import { runPool } from '../../core/pool.js';
import type { BlobInfo, BlobStore } from '../../infra/blobs/blob-store.js';
import { contentHashOfDerivedKey, contentHashOfObjectKey } from '../../infra/blobs/object-keys.js';
import { type ObjectLocator, openObject } from '../../infra/blobs/object-reader.js';
import type { ObjectsRepository } from './objects.repository.js';

export interface MismatchedObject {
  contentHash: string;
  bucket: Bucket;
  expectedSize: number;
  /** What was read; absent when reading failed (error says why). */
  actualSize?: number;
  actualSha256?: string;
  error?: string;
}

export interface VerifyReport {
  /** True when no object is damaged, missing or orphaned. */
  ok: boolean;
  /** Objects read back and hashed, and their bytes. */
  checked: { objects: number; bytes: number };
  /** How many of each finding; the lists below stop at `listLimit` entries each. */
  counts: { mismatched: number; missing: number; orphans: number; derivedWithoutContent: number; unfinishedMoves: number };
  /** Objects whose bytes do not have their content hash or size, or cannot be read. */
  mismatched: MismatchedObject[];
  /** Objects the metadata records whose blob is not in the bucket it names. */
  missing: { contentHash: string; bucket: Bucket }[];
  /** Blobs in a tier bucket that no metadata records there. */
  orphans: { bucket: Bucket; key: string; size: number }[];
  /**
   * Thumbnails and HLS files of content no longer stored. Reported, but not counted against `ok`:
   * purging the trash does not remove derived files yet, so they are expected.
   */
  derivedWithoutContent: { bucket: Bucket; key: string }[];
  listLimit: number;
}

const PAGE = 500;
const LIST_LIMIT = 1000;
/** Objects read at once: enough to overlap reads and hashing, few enough for a Pi. */
const READERS = 2;

/**
 * `photovault server verify` (DESIGN section 9): re-reads every object of the metadata and checks
 * its SHA-256 and size, then lists every tier bucket for blobs nothing records, and the derived
 * buckets for files of content that is gone. Memory stays flat however large the store: the
 * metadata is read in pages, blobs are streamed, listings are looked up in batches, and the lists
 * of findings are capped (the counts are not).
 *
 * Safe beside a running server and tiering job: a read that misses an object just moved looks it
 * up again (openObject); the copies of a move under way are both expected; an apparent orphan is
 * looked up again before it is reported.
 */
export class IntegrityService {
  private readonly locator: ObjectLocator;

  constructor(
    private readonly objects: ObjectsRepository,
    private readonly blobs: BlobStore,
  ) {
    this.locator = { bucketOf: async (hash) => (await this.objects.placesOf(hash))?.bucket ?? null };
  }

  async verify(): Promise<VerifyReport> {
    const report: VerifyReport = {
      ok: true,
      checked: { objects: 0, bytes: 0 },
      counts: { mismatched: 0, missing: 0, orphans: 0, derivedWithoutContent: 0, unfinishedMoves: 0 },
      mismatched: [],
      missing: [],
      orphans: [],
      derivedWithoutContent: [],
      listLimit: LIST_LIMIT,
    };
    const add = <K extends 'mismatched' | 'missing' | 'orphans' | 'derivedWithoutContent'>(kind: K, entry: VerifyReport[K][number]) => {
      report.counts[kind]++;
      if (report[kind].length < LIST_LIMIT) (report[kind] as VerifyReport[K][number][]).push(entry);
    };

    for (let after = ''; ;) {
      const page = await this.objects.page(after, PAGE);
      await runPool(page, READERS, async (object) => {
        const read = await this.readBack(object.hash, object.bucket);
        if (read === 'gone') return;
        if ('missingFrom' in read) return add('missing', { contentHash: object.hash, bucket: read.missingFrom });
        report.checked.objects++;
        report.checked.bytes += read.actualSize ?? 0;
        if (read.actualSha256 !== object.hash || read.actualSize !== object.size) {
          add('mismatched', { contentHash: object.hash, bucket: object.bucket, expectedSize: object.size, ...read });
        }
      });
      if (page.length < PAGE) break;
      after = page.at(-1)!.hash;
    }
    for (let after = ''; ;) {
      const moving = await this.objects.unfinishedMoves(after, PAGE);
      report.counts.unfinishedMoves += moving.length;
      if (moving.length < PAGE) break;
      after = moving.at(-1)!;
    }

    for (const bucket of TIER_BUCKETS) {
      for await (const batch of batches(this.blobs.list(bucket))) {
        for (const blob of await this.orphansIn(bucket, batch)) add('orphans', { bucket, key: blob.key, size: blob.size });
      }
    }
    for (const bucket of ['thumbnails', 'videos-transcoded'] as const) {
      for await (const batch of batches(this.blobs.list(bucket))) {
        const hashes = batch.map((blob) => contentHashOfDerivedKey(blob.key));
        const stored = await this.objects.placesOfMany([...new Set(hashes.filter((hash) => hash !== null))]);
        batch.forEach((blob, i) => {
          if (!stored.has(hashes[i] ?? '')) add('derivedWithoutContent', { bucket, key: blob.key });
        });
      }
    }
    report.ok = report.counts.mismatched + report.counts.missing + report.counts.orphans === 0;
    return report;
  }

  /**
   * Reads an object back where the metadata records it now: its size and SHA-256, or why it could
   * not be read; 'gone' when it was purged meanwhile.
   */
  private async readBack(
    hash: string,
    bucket: Bucket,
  ): Promise<'gone' | { missingFrom: Bucket } | Pick<MismatchedObject, 'actualSize' | 'actualSha256' | 'error'>> {
    try {
      const digest = createHash('sha256');
      let size = 0;
      for await (const piece of await openObject(this.blobs, this.locator, hash, { bucket })) {
        digest.update(piece as Uint8Array);
        size += (piece as Uint8Array).length;
      }
      return { actualSize: size, actualSha256: digest.digest('hex') };
    } catch (error) {
      if (!isPvError(error, 'PV_BLOB_NOT_FOUND')) return { error: error instanceof Error ? error.message : String(error) };
      const recorded = await this.locator.bucketOf(hash);
      return recorded === null ? 'gone' : { missingFrom: recorded };
    }
  }

  /** The blobs of a batch listed in bucket that no object records there, looked up twice (see the class). */
  private async orphansIn(bucket: Bucket, batch: BlobInfo[]): Promise<BlobInfo[]> {
    const unrecorded = async (blobs: BlobInfo[]) => {
      const hashes = blobs.map((blob) => contentHashOfObjectKey(blob.key));
      const places = await this.objects.placesOfMany([...new Set(hashes.filter((hash) => hash !== null))]);
      return blobs.filter((_, i) => {
        const at = places.get(hashes[i] ?? '');
        return at === undefined || (at.bucket !== bucket && at.extraCopyBucket !== bucket);
      });
    };
    const candidates = await unrecorded(batch);
    if (candidates.length === 0) return [];
    // A move or an upload may have finished since the listing: what is still there and still unrecorded is an orphan.
    const present: BlobInfo[] = [];
    for (const blob of candidates) if ((await this.blobs.head(bucket, blob.key)) !== null) present.push(blob);
    return unrecorded(present);
  }
}

/** The items of a listing in arrays of up to PAGE. */
async function* batches(items: AsyncIterable<BlobInfo>): AsyncGenerator<BlobInfo[]> {
  let batch: BlobInfo[] = [];
  for await (const item of items) {
    batch.push(item);
    if (batch.length === PAGE) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}
