import type { JobKind, JobOutputs, MediaKind } from '../core/media.js';
import type { BlobStore } from '../infra/blobs/blob-store.js';

/** What a job handler is given: the original's bytes in a local file, and where to put what it derives. */
export interface JobInput {
  contentHash: string;
  mediaKind: MediaKind;
  /** A private copy of the original; the handler may read it as often as it likes. */
  source: string;
  /** A scratch folder of this job alone, removed after it. */
  workDir: string;
  blobs: BlobStore;
  signal: AbortSignal;
}

/**
 * One kind of processing job. Must be idempotent: it may run again for the same content after
 * a crash, and its derived files overwrite those of an earlier run. Throws
 * UnprocessableMediaError when no retry can succeed.
 */
export type JobHandler<K extends JobKind> = (input: JobInput) => Promise<JobOutputs[K]>;

export type JobHandlers = { [K in JobKind]: JobHandler<K> };
