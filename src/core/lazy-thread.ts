import { Worker } from 'node:worker_threads';
import { PvError } from './errors.js';

let lastJob = 0;

/** A job number no other job of this process has, on any thread. */
export function newJob(): number {
  return ++lastJob;
}

/** What a thread's replies to one job go to. */
export interface ThreadJob<R> {
  receive(reply: R): void;
  fail(error: Error): void;
}

/**
 * One lazily started worker thread running `source` (plain JavaScript, evaluated as is), shared
 * by all jobs of its kind (threads are a process resource); it keeps the process alive only while
 * a job is using it. Replies name their job; a thread that dies fails every job it had.
 */
export class LazyThread<Request, Reply extends { job: number }> {
  #worker: Worker | undefined;
  readonly #jobs = new Map<number, ThreadJob<Reply>>();

  constructor(
    private readonly source: string,
    private readonly workerData?: unknown,
  ) {}

  attach(job: number, receiver: ThreadJob<Reply>): void {
    const worker = (this.#worker ??= this.#start());
    this.#jobs.set(job, receiver);
    if (this.#jobs.size === 1) worker.ref();
  }

  /** Ends a job; farewell tells the thread to drop what it holds for it. */
  detach(job: number, farewell?: Request): void {
    if (!this.#jobs.delete(job)) return;
    if (farewell !== undefined) this.#worker?.postMessage(farewell);
    if (this.#jobs.size === 0) this.#worker?.unref();
  }

  post(request: Request): void {
    this.#worker?.postMessage(request);
  }

  /** Posts a request, as a job of its own, that gets one reply: the job ends with it. */
  ask(fields: Omit<Request, 'job'>): Promise<Reply> {
    const job = newJob();
    const request = { ...fields, job } as Request;
    return new Promise<Reply>((resolve, reject) => {
      this.attach(job, {
        receive: (reply) => {
          this.detach(job);
          resolve(reply);
        },
        fail: reject,
      });
      this.post(request);
    });
  }

  #start(): Worker {
    const worker = new Worker(this.source, { eval: true, workerData: this.workerData });
    worker.unref();
    worker.on('message', (reply: Reply) => this.#jobs.get(reply.job)?.receive(reply));
    const fail = (cause: unknown): void => {
      if (this.#worker === worker) this.#worker = undefined;
      const error = new PvError('PV_INTERNAL', 'A worker thread stopped unexpectedly.', { cause });
      for (const receiver of this.#jobs.values()) receiver.fail(error);
      this.#jobs.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`exit code ${code}`)));
    return worker;
  }
}
