import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { isPvError } from '../core/errors.js';
import { type JobKind, type JobState, jobQueue, type ProcessingOutcome, RESULTS_QUEUE } from '../core/media.js';
import type { BlobStore } from '../infra/blobs/blob-store.js';
import { type ObjectLocator, openObject } from '../infra/blobs/object-reader.js';
import { ownScratchFolder, removeAbandonedScratch } from '../infra/process/scratch-folders.js';
import type { BusMessage, EventBus, EventPayloads, Subscription } from '../infra/bus/event-bus.js';
import type { JobHandlers } from './job-handler.js';
import type { JobObserver, JobRunOutcome } from './job-metrics.js';

/** The few things a worker asks of the metadata, whichever process it runs in. */
export interface WorkerCatalog extends ObjectLocator {
  /** The recorded state of a job, to skip one already done. */
  stateOf(contentHash: string, job: JobKind): Promise<JobState | null>;
}

export interface WorkerLog {
  info(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

export interface WorkerOptions {
  /** Which jobs this process runs, and how many of each at once. */
  concurrency: Partial<Record<JobKind, number>>;
  /** Tries before a job that keeps failing ends as failed with its last error. */
  maxAttempts: number;
  /** Scratch space; each process works in a folder of its own below it. */
  workRoot: string;
  /** Between tries of a failing job. */
  backoffMs?: number[];
  /** A job's lease; renewed while it runs, so only a dead worker's job waits this long to run again. */
  leaseMs?: number;
  /** Told of every run, for /metrics. */
  observer?: JobObserver;
}

/**
 * Runs processing jobs from the `processing-jobs` stream: one durable consumer per job kind,
 * shared by every process that runs that kind, so each job goes to one worker at a time. A
 * job's outcome goes to `processing-results`, where the server records it.
 */
export class ProcessingWorker {
  private readonly workDir: string;
  private readonly running = new AbortController();

  constructor(
    private readonly bus: EventBus,
    private readonly blobs: BlobStore,
    private readonly catalog: WorkerCatalog,
    private readonly handlers: JobHandlers,
    private readonly log: WorkerLog,
    private readonly options: WorkerOptions,
  ) {
    this.workDir = ownScratchFolder(options.workRoot);
  }

  async start(): Promise<Subscription> {
    await this.clearAbandonedWork();
    // Outcomes are kept for the server's recorder even if no server has started yet.
    await this.bus.declare(RESULTS_QUEUE, 'processing-results');
    const subscriptions: Subscription[] = [];
    for (const [job, concurrency] of Object.entries(this.options.concurrency) as [JobKind, number][]) {
      subscriptions.push(
        await this.bus.subscribe(
          {
            durable: jobQueue(job),
            stream: 'processing-jobs',
            concurrency,
            // The worker decides when a job has failed for good (see run); the bus's own limit is
            // a backstop for a worker that dies every time it touches the job.
            maxDeliver: this.options.maxAttempts + 2,
            backoffMs: this.options.backoffMs ?? [2_000, 10_000, 60_000],
            ackWaitMs: this.options.leaseMs ?? 30_000,
            renewLease: true,
          },
          (message) => this.run(job, message),
        ),
      );
    }
    return {
      stop: async () => {
        this.running.abort();
        await Promise.all(subscriptions.map((subscription) => subscription.stop()));
      },
    };
  }

  private async run(kind: JobKind, message: BusMessage): Promise<void> {
    if (message.event !== 'processing.requested') return;
    const request = message.payload as EventPayloads['processing.requested'];
    if (request.job !== kind) return;
    if ((await this.catalog.stateOf(request.contentHash, request.job)) === 'done') return;
    const started = Date.now();
    this.options.observer?.started(kind);
    let ended: JobRunOutcome = 'retried';
    try {
      ended = await this.runJob(request, message, started);
    } finally {
      this.options.observer?.finished(kind, ended, (Date.now() - started) / 1000);
    }
  }

  /** Runs a job and publishes its outcome; throws to have it tried again. */
  private async runJob(request: EventPayloads['processing.requested'], message: BusMessage, started: number): Promise<'done' | 'failed'> {
    const { contentHash, job } = request;
    this.log.info({ job, contentHash, attempt: message.attempt }, 'job started');
    await mkdir(this.workDir, { recursive: true });
    const workDir = await mkdtemp(join(this.workDir, `${job}-`));
    let outcome: ProcessingOutcome;
    try {
      const bucket = await this.catalog.bucketOf(contentHash);
      if (bucket === null) {
        outcome = {
          contentHash,
          job,
          mediaKind: request.mediaKind,
          attempts: message.attempt,
          state: 'failed',
          error: 'the original is no longer stored',
        };
      } else {
        const source = join(workDir, 'source');
        await pipeline(await openObject(this.blobs, this.catalog, contentHash, { bucket }), createWriteStream(source));
        const output = await (this.handlers[job] as (typeof this.handlers)[JobKind])({
          contentHash,
          mediaKind: request.mediaKind,
          source,
          workDir,
          blobs: this.blobs,
          signal: this.running.signal,
        });
        outcome = { contentHash, job, mediaKind: request.mediaKind, attempts: message.attempt, state: 'done', output } as ProcessingOutcome;
      }
    } catch (error) {
      const permanent = isPvError(error, 'PV_MEDIA_UNPROCESSABLE') || isPvError(error, 'PV_MEDIA_DECODER_MISSING');
      if (!permanent && (message.attempt < this.options.maxAttempts || this.running.signal.aborted)) {
        this.log.error({ job, contentHash, attempt: message.attempt, err: error }, 'job failed, will retry');
        throw error;
      }
      outcome = { contentHash, job, mediaKind: request.mediaKind, attempts: message.attempt, state: 'failed', error: reasonOf(error) };
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
    await this.bus.publish('processing.finished', outcome);
    this.log.info(
      {
        job,
        contentHash,
        state: outcome.state,
        ms: Date.now() - started,
        ...(outcome.state === 'failed' ? { reason: outcome.error } : {}),
      },
      'job finished',
    );
    return outcome.state;
  }

  /**
   * Removes scratch folders of worker processes that are gone (killed mid-job, say), after
   * ending the tools they had started: an ffmpeg whose worker was SIGKILLed runs on as an orphan.
   */
  private clearAbandonedWork(): Promise<void> {
    return removeAbandonedScratch(this.options.workRoot, killProcessesUsing);
  }
}

/** Kills every process whose command line names a path inside folder (Linux: read from /proc). */
async function killProcessesUsing(folder: string): Promise<void> {
  const pids = await readdir('/proc').catch(() => []);
  for (const name of pids) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const commandLine = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (commandLine.split('\0').some((arg) => arg.includes(`${folder}/`))) {
      try {
        process.kill(Number(name), 'SIGKILL');
      } catch {
        // Gone meanwhile, or not ours to kill.
      }
    }
  }
}

function reasonOf(error: unknown): string {
  if (isPvError(error) && error.fix) return `${error.message} (${error.fix})`;
  return error instanceof Error ? error.message : String(error);
}
