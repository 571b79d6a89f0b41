import { join } from 'node:path';
import type { ServerConfig } from '../core/config.js';
import { JOB_KINDS, type JobKind } from '../core/media.js';
import type { BlobStore } from '../infra/blobs/blob-store.js';
import type { EventBus, Subscription } from '../infra/bus/event-bus.js';
import { JOB_HANDLERS } from './job-handlers.js';
import type { JobObserver } from './job-metrics.js';
import { configureSharpForThumbnailWorker } from './thumbnails/thumbnail.renderer.js';
import { ProcessingWorker, type WorkerCatalog, type WorkerLog } from './processing.worker.js';

export interface WorkerPorts {
  bus: EventBus;
  blobs: BlobStore;
  catalog: WorkerCatalog;
  log: WorkerLog;
  /** Where the jobs' runs are counted (the process's /metrics). */
  metrics: JobObserver;
}

/**
 * Starts the processing workers of this process: every job kind, or only those named, each with
 * the concurrency the config gives it.
 */
export function startWorkers(ports: WorkerPorts, config: ServerConfig, only: readonly JobKind[] = JOB_KINDS): Promise<Subscription> {
  const concurrency = Object.fromEntries(only.map((job) => [job, config.processing[job]]));
  // Parallelism comes from images in flight, one libvips thread each (see the function).
  if (only.includes('thumbnails')) configureSharpForThumbnailWorker();
  const worker = new ProcessingWorker(ports.bus, ports.blobs, ports.catalog, JOB_HANDLERS, ports.log, {
    concurrency,
    maxAttempts: config.processing.maxAttempts,
    leaseMs: config.processing.leaseSeconds * 1000,
    workRoot: join(config.dataDir, 'work', 'processing'),
    observer: ports.metrics,
  });
  return worker.start();
}
