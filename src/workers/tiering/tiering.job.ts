import { type Bucket, type TierBucket, type TierPolicy, tierForAge } from '../../core/buckets.js';
import { isPvError, PvError } from '../../core/errors.js';
import type { BlobStore } from '../../infra/blobs/blob-store.js';
import { objectKey } from '../../infra/blobs/object-keys.js';
import type { Leases } from '../../infra/db/leases.js';

/** An object the tiering job may move. */
export interface TierableObject {
  hash: string;
  size: number;
  bucket: Bucket;
  createdAt: number;
}

/** What the tiering job asks of the metadata (ObjectsRepository). */
export interface TieringCatalog {
  /** Objects of a bucket stored at or before createdBefore and under no move, oldest first, after the cursor. */
  due(
    bucket: TierBucket,
    createdBefore: number,
    after: { createdAt: number; hash: string } | null,
    limit: number,
  ): Promise<TierableObject[]>;
  /** Marks the start of a move; false when the object is no longer recorded in from (purged, say). */
  beginMove(hash: string, from: Bucket, to: Bucket): Promise<boolean>;
  /** Records the copy in to instead of the one in from, if the object is still marked as moving there. */
  switchMove(hash: string, from: Bucket, to: Bucket): Promise<boolean>;
  /** Clears the mark of a move whose extra copy is gone; returns the bucket to delete from when the object was purged meanwhile. */
  endMove(hash: string): Promise<Bucket | null>;
  placesOf(hash: string): Promise<{ bucket: Bucket; extraCopyBucket: Bucket | null } | null>;
  /** Objects marked as moving, by hash after the cursor. */
  unfinishedMoves(afterHash: string, limit: number): Promise<string[]>;
}

export interface TieringTransition {
  from: TierBucket;
  to: TierBucket;
  objects: number;
  bytes: number;
}

export interface TieringFailure {
  contentHash: string;
  /** The move that failed; null for a failure finishing an interrupted move. */
  from: Bucket | null;
  to: Bucket | null;
  error: string;
  /** Set when undoing the failed move failed too: the next run finishes it (the object stays readable). */
  leftForNextRun?: string;
}

export interface TieringReport {
  dryRun: boolean;
  /** False when another run held the lease, so this one did nothing. */
  ran: boolean;
  /** What moved (would move, in a dry run), per transition. */
  transitions: TieringTransition[];
  /** Moves an interrupted earlier run left, finished (would be finished) before moving anything. */
  recovered: number;
  failures: TieringFailure[];
}

/** The only one run at a time, across every process on the same metadata. */
const LEASE = 'tiering';
/** A run renews its lease every third of this; a crashed run's lease lets the next one start after it. */
const LEASE_TTL_MS = 2 * 60_000;
const PAGE = 200;
const TRANSITIONS: [TierBucket, TierBucket][] = [
  ['uploads', 'photos-warm'],
  ['uploads', 'photos-cold'],
  ['photos-warm', 'photos-cold'],
];
const DAY_MS = 86_400_000;

/**
 * Moves originals down the tiers as they age (DESIGN section 7): `uploads` -> `photos-warm` ->
 * `photos-cold`, by the object's created_at (when its content was first stored). Objects never
 * move back up. Each move, in this order, so a crash at any step leaves the recorded copy whole and
 * readable and the row saying where any other copy is (docs/architecture.md, storage tiers):
 *
 *   1. mark the row: extra_copy_bucket = target (only if still recorded in the source);
 *   2. copy source -> target with put's sha256 and size check, so only verified bytes land;
 *   3. head the copy: it is there, whole;
 *   4. switch the row to the target in one conditional update; the source becomes the extra copy;
 *   5. delete the extra copy, then clear the mark (or delete the row, if a purge left it to us).
 *
 * A run first finishes the moves an interrupted run left (step 5 from wherever they stopped).
 */
export class TieringJob {
  constructor(
    private readonly catalog: TieringCatalog,
    private readonly blobs: BlobStore,
    private readonly leases: Leases,
    private readonly policy: TierPolicy,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * One run: what moved, what failed. A dry run only counts, and takes no lease. The signal stops
   * a run between objects (the run then rejects with its reason).
   */
  async run(options: { dryRun?: boolean; signal?: AbortSignal } = {}): Promise<TieringReport> {
    const dryRun = options.dryRun ?? false;
    if (dryRun) return this.pass(true, options.signal);
    const report = await this.leases.hold(LEASE, LEASE_TTL_MS, (lost) =>
      this.pass(false, options.signal ? AbortSignal.any([options.signal, lost]) : lost),
    );
    return report ?? { ...emptyReport(false), ran: false };
  }

  private async pass(dryRun: boolean, signal: AbortSignal | undefined): Promise<TieringReport> {
    const report = emptyReport(dryRun);
    for (let after = ''; ;) {
      const hashes = await this.catalog.unfinishedMoves(after, PAGE);
      for (const hash of hashes) {
        signal?.throwIfAborted();
        try {
          if (!dryRun) await this.endMove(hash);
          report.recovered++;
        } catch (error) {
          report.failures.push({ contentHash: hash, from: null, to: null, error: reasonOf(error), leftForNextRun: messageOf(error) });
        }
      }
      if (hashes.length < PAGE) break;
      after = hashes.at(-1)!;
    }

    const at = this.now();
    for (const [source, days] of [
      ['uploads', this.policy.warmAfterDays],
      ['photos-warm', this.policy.coldAfterDays],
    ] as const) {
      for (let after: TierableObject | null = null; ;) {
        const due = await this.catalog.due(source, at - days * DAY_MS, after, PAGE);
        for (const object of due) {
          signal?.throwIfAborted();
          const target = tierForAge(at - object.createdAt, this.policy);
          if (!dryRun) {
            try {
              if (!(await this.move(object, target, signal))) continue;
            } catch (error) {
              report.failures.push(await this.undo(object, target, error, signal));
              continue;
            }
          }
          const transition = report.transitions.find((t) => t.from === source && t.to === target)!;
          transition.objects++;
          transition.bytes += object.size;
        }
        if (due.length < PAGE) break;
        after = due.at(-1)!;
      }
    }
    return report;
  }

  /**
   * Steps 1-5 of one move; false when the object went away (purged) before it began. A run that
   * lost its lease stops before it changes the row again: the new holder finishes the move.
   */
  private async move(object: TierableObject, target: TierBucket, signal: AbortSignal | undefined): Promise<boolean> {
    const key = objectKey(object.hash);
    if (!(await this.catalog.beginMove(object.hash, object.bucket, target))) return false;
    const source = await this.blobs.get(object.bucket, key);
    try {
      await this.blobs.put(target, key, source, { sha256: object.hash, size: object.size });
    } finally {
      source.destroy();
    }
    const copy = await this.blobs.head(target, key);
    if (copy?.size !== object.size) {
      throw new PvError('PV_INTEGRITY', `The copy in ${target} has ${copy?.size ?? 'no'} bytes instead of ${object.size}.`);
    }
    signal?.throwIfAborted();
    if (!(await this.catalog.switchMove(object.hash, object.bucket, target))) {
      // Only a run that outlived its lease can lose its mark to another's recovery.
      throw new PvError('PV_CONFLICT', 'Another tiering run took this move over.');
    }
    signal?.throwIfAborted();
    await this.endMove(object.hash);
    return true;
  }

  /** Step 5, for a move stopped at any step: deletes the copy the row does not record, then ends the move. */
  private async endMove(hash: string): Promise<void> {
    const places = await this.catalog.placesOf(hash);
    if (places?.extraCopyBucket == null) return;
    const key = objectKey(hash);
    if (places.extraCopyBucket !== places.bucket) await this.blobs.delete(places.extraCopyBucket, key);
    const purged = await this.catalog.endMove(hash);
    if (purged !== null) await this.blobs.delete(purged, key);
  }

  /** Undoes what a failed move can (the next run does the rest) and describes the failure. */
  private async undo(object: TierableObject, target: TierBucket, error: unknown, signal: AbortSignal | undefined): Promise<TieringFailure> {
    const failure: TieringFailure = { contentHash: object.hash, from: object.bucket, to: target, error: reasonOf(error) };
    try {
      signal?.throwIfAborted();
      await this.endMove(object.hash);
    } catch (undoError) {
      failure.leftForNextRun = messageOf(undoError);
    }
    return failure;
  }
}

function emptyReport(dryRun: boolean): TieringReport {
  return {
    dryRun,
    ran: true,
    transitions: TRANSITIONS.map(([from, to]) => ({ from, to, objects: 0, bytes: 0 })),
    recovered: 0,
    failures: [],
  };
}

function reasonOf(error: unknown): string {
  // The source copy was marked as moving, so no purge removed it: the recorded copy is missing.
  if (isPvError(error, 'PV_BLOB_NOT_FOUND')) return `${error.message} (the recorded copy is missing; see photovault server verify)`;
  return messageOf(error);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
