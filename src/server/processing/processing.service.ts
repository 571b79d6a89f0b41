import type { Readable } from 'node:stream';
import { PvError } from '../../core/errors.js';
import {
  JOB_KINDS,
  type JobKind,
  jobQueue,
  type JobOutputs,
  jobsFor,
  mediaKindOf,
  type ProcessingOutcome,
  RESULTS_QUEUE,
  THUMBNAIL_SIZES,
} from '../../core/media.js';
import { normalizePath } from '../../core/paths.js';
import type { MediaView } from '../../core/protocol.js';
import type { BlobStore } from '../../infra/blobs/blob-store.js';
import { hlsKey, thumbnailKey } from '../../infra/blobs/object-keys.js';
import type { EventBus, Subscription } from '../../infra/bus/event-bus.js';
import type { ProcessingJobRow } from '../../infra/db/schema.js';
import type { FilesService } from '../files/files.service.js';
import type { FilesRepository } from '../files/files.repository.js';
import type { ChangeNotifier } from '../sync/change-notifier.js';
import type { Principal } from '../user/user.service.js';
import type { ProcessingRepository } from './processing.repository.js';

/** A derived file the user may read; opened only when the client's cached copy is stale. */
export interface DerivedFile {
  bytes: number;
  open(): Promise<Readable>;
}

/** The API path under which a content's derived files are served. */
export const MEDIA_ROUTE_PREFIX = '/api/v1/media';

/** A path inside an HLS ladder: segments of safe characters, as the transcoder names them. */
const HLS_FILE = /^(?:[A-Za-z0-9_-][A-Za-z0-9._-]*\/)*[A-Za-z0-9_-][A-Za-z0-9._-]*\.(?:m3u8|ts|m4s|mp4)$/;

/**
 * The server's half of the processing pipeline (DESIGN sections 5 and 6): turns committed
 * uploads into jobs, records the workers' outcomes in the metadata and the change feed, and
 * serves what they derived behind the same authorisation as the original.
 */
export class ProcessingService {
  constructor(
    private readonly jobs: ProcessingRepository,
    private readonly files: FilesService,
    private readonly filesRepository: FilesRepository,
    private readonly blobs: BlobStore,
    private readonly bus: EventBus,
    private readonly notifier: ChangeNotifier,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Subscribes the dispatcher (file.uploaded -> processing.requested) and the recorder
   * (processing.finished -> metadata + change feed), then requests jobs for any content a crash
   * or an older release left without them. The workers' queues are declared first: jobs are
   * kept for worker processes that have not started yet.
   */
  async start(): Promise<Subscription[]> {
    for (const job of JOB_KINDS) await this.bus.declare(jobQueue(job), 'processing-jobs');
    const subscriptions = [
      // The dispatcher only looks at a path and publishes jobs: 16 at a time, a first sync's burst
      // of uploads takes a claim per 16 messages where 4 at a time took one per 4.
      await this.bus.subscribe({ durable: 'processing-dispatch', stream: 'file-uploads', concurrency: 16 }, async (message) => {
        if (message.event === 'file.uploaded') {
          const { contentHash, path } = message.payload as { contentHash: string; path: string };
          await this.request(contentHash, path);
        }
      }),
      await this.bus.subscribe({ durable: RESULTS_QUEUE, stream: 'processing-results', concurrency: 4 }, async (message) => {
        if (message.event === 'processing.finished') await this.record(message.payload as ProcessingOutcome);
      }),
    ];
    await this.reconcile();
    return subscriptions;
  }

  /**
   * Publishes the jobs a content does not have yet. A job is published before it is recorded
   * as pending, so a recorded job has been asked for, and a crash in between at worst asks for
   * it twice. A job asked for twice (the same content uploaded twice at once) runs once in
   * effect: workers skip done jobs, and the recorder keeps the first 'done'.
   */
  async request(contentHash: string, path: string): Promise<void> {
    const mediaKind = mediaKindOf(path);
    if (mediaKind === null) return;
    const known = new Set((await this.jobs.jobsOf(contentHash)).map((row) => row.job));
    for (const job of jobsFor(mediaKind)) {
      if (known.has(job)) continue;
      await this.bus.publish('processing.requested', { contentHash, job, mediaKind });
      await this.jobs.ensure(contentHash, job, mediaKind, this.now());
    }
  }

  /** Records a worker's outcome and tells the owners' devices. */
  async record(outcome: ProcessingOutcome): Promise<void> {
    for (const owner of await this.jobs.record(outcome, this.now())) this.notifier.changed(owner);
  }

  /** Requests the jobs of every content that has none (see ProcessingRepository.unprocessed). */
  async reconcile(): Promise<number> {
    let after: string | null = null;
    let requested = 0;
    for (;;) {
      const page = await this.jobs.unprocessed(after, 500);
      for (const content of page) {
        if (mediaKindOf(content.name) === null) continue;
        await this.request(content.contentHash, content.name);
        requested++;
      }
      if (page.length < 500) return requested;
      after = page.at(-1)!.versionId;
    }
  }

  /** What the workers derived from the file at path (its head, or the named version). */
  async media(principal: Principal, path: string, versionId: string | null): Promise<MediaView> {
    const normalized = normalizePath(path);
    const mediaKind = mediaKindOf(normalized);
    if (mediaKind === null) {
      throw new PvError('PV_NOT_FOUND', `${normalized} is not a photo or a video: it has no derived files.`, { path: normalized });
    }
    const version = await this.files.resolveVersion(principal, normalized, versionId);
    const rows = await this.jobs.jobsOf(version.contentHash);
    const outputOf = <K extends JobKind>(job: K): JobOutputs[K] | null => {
      const row = rows.find((candidate) => candidate.job === job && candidate.state === 'done');
      return row?.output ? (JSON.parse(row.output) as JobOutputs[K]) : null;
    };
    const base = `${MEDIA_ROUTE_PREFIX}/${version.contentHash}`;
    const thumbnails = outputOf('thumbnails');
    const ladder = outputOf('transcode');
    return {
      path: normalized,
      versionId: version.id,
      contentHash: version.contentHash,
      kind: mediaKind,
      metadata: outputOf('metadata'),
      thumbhash: thumbnails?.thumbhash ?? null,
      jobs: jobsFor(mediaKind).map((job) =>
        jobView(
          job,
          rows.find((row) => row.job === job),
        ),
      ),
      thumbnails: (thumbnails?.thumbnails ?? []).map((thumbnail) => ({ ...thumbnail, url: `${base}/thumbnails/${thumbnail.size}` })),
      hls: ladder && {
        master: `${base}/hls/${ladder.master}`,
        renditions: ladder.renditions.map(({ width, height, bandwidth }) => ({ width, height, bandwidth })),
      },
    };
  }

  /** A WebP thumbnail of a content the user holds. */
  async thumbnail(principal: Principal, contentHash: string, size: number): Promise<DerivedFile> {
    if (!(THUMBNAIL_SIZES as readonly number[]).includes(size)) {
      throw new PvError('PV_INVALID_INPUT', `No thumbnail size ${size}.`, { fix: `Ask for one of ${THUMBNAIL_SIZES.join(', ')}.` });
    }
    await this.requireHolder(principal, contentHash);
    return this.derived('thumbnails', thumbnailKey(contentHash, size), `No thumbnail ${size} of this content yet.`);
  }

  /** A playlist or segment of the HLS ladder of a content the user holds. */
  async hlsFile(principal: Principal, contentHash: string, file: string): Promise<DerivedFile> {
    if (!HLS_FILE.test(file)) throw new PvError('PV_NOT_FOUND', 'No such file in the ladder.');
    await this.requireHolder(principal, contentHash);
    return this.derived('videos-transcoded', hlsKey(contentHash, file), 'No such file in the ladder (not transcoded yet?).');
  }

  /** Derived files follow the original's authorisation: only a user holding the content may read them. */
  private async requireHolder(principal: Principal, contentHash: string): Promise<void> {
    // Another user's content answers exactly like content that does not exist.
    if (!(await this.filesRepository.findVersionByContent(principal.userId, contentHash))) {
      throw new PvError('PV_NOT_FOUND', 'No such content.');
    }
  }

  private async derived(bucket: 'thumbnails' | 'videos-transcoded', key: string, missing: string): Promise<DerivedFile> {
    const info = await this.blobs.head(bucket, key);
    if (!info) throw new PvError('PV_NOT_FOUND', missing);
    return { bytes: info.size, open: () => this.blobs.get(bucket, key) };
  }
}

function jobView(job: JobKind, row: ProcessingJobRow | undefined) {
  return {
    job,
    state: row?.state ?? 'pending',
    attempts: row?.attempts ?? 0,
    error: row?.error ?? null,
    updatedAt: new Date(row?.updated_at ?? 0).toISOString(),
  };
}
