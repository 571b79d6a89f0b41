import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { JobKind } from '../core/media.js';

/** How a job's run ended: done or failed for good, or failed this time and left for another try. */
export type JobRunOutcome = 'done' | 'failed' | 'retried';

/** What a processing worker tells about its jobs, for /metrics. */
export interface JobObserver {
  started(job: JobKind): void;
  finished(job: JobKind, outcome: JobRunOutcome, seconds: number): void;
}

/**
 * The processing jobs' Prometheus metrics, in the registry of the process that runs them: the
 * server's when its workers run in process, a `worker start` process's own otherwise.
 */
export class JobMetrics implements JobObserver {
  private readonly runs: Counter<'job' | 'outcome'>;
  private readonly duration: Histogram<'job' | 'outcome'>;
  private readonly running: Gauge<'job'>;

  constructor(registry: Registry) {
    this.runs = new Counter({
      name: 'photovault_job_runs_total',
      help: 'Runs of processing jobs by kind and outcome (done, failed for good, or retried later)',
      labelNames: ['job', 'outcome'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'photovault_job_duration_seconds',
      help: 'Duration of processing job runs by kind and outcome',
      labelNames: ['job', 'outcome'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
      registers: [registry],
    });
    this.running = new Gauge({
      name: 'photovault_jobs_running',
      help: 'Processing jobs running now, by kind',
      labelNames: ['job'],
      registers: [registry],
    });
  }

  started(job: JobKind): void {
    this.running.inc({ job });
  }

  finished(job: JobKind, outcome: JobRunOutcome, seconds: number): void {
    this.running.dec({ job });
    this.runs.inc({ job, outcome });
    this.duration.observe({ job, outcome }, seconds);
  }
}
