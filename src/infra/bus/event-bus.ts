import { PvError } from '../../core/errors.js';
import type { JobKind, MediaKind, ProcessingOutcome } from '../../core/media.js';

/**
 * Durable events and jobs (DESIGN section 5). Embedded: a SQLite table. Cluster: NATS JetStream.
 *
 * Guarantees both adapters give: a published message survives a restart; each durable consumer
 * gets every message published to its stream after the consumer was first created, at least
 * once; a message is redelivered until acked, with backoff, at most maxDeliver times, after which
 * it moves to the dead-letter store with the last error. Handlers must therefore be idempotent.
 */

/** The streams of DESIGN section 5. */
export const STREAMS = ['file-uploads', 'sync-events', 'processing-jobs', 'processing-results', 'share-events'] as const;
export type StreamName = (typeof STREAMS)[number];

/** DESIGN section 5: each stream keeps a message 7 days. */
export const RETENTION_MS = 7 * 24 * 60 * 60 * 1000;

/** One typed map from event name to payload; later issues add their events here. */
export interface EventPayloads {
  'file.uploaded': {
    ownerId: string;
    fileId: string;
    versionId: string;
    path: string;
    contentHash: string;
    size: number;
  };
  /** A processing job for one content (derived files are per content, shared by every version holding it). */
  'processing.requested': {
    contentHash: string;
    job: JobKind;
    mediaKind: MediaKind;
  };
  /** A job's outcome: done with what it derived, or failed for good with its reason. */
  'processing.finished': ProcessingOutcome;
}
export type EventName = keyof EventPayloads;

/** Which stream carries each event. */
export const EVENT_STREAM: Record<EventName, StreamName> = {
  'file.uploaded': 'file-uploads',
  'processing.requested': 'processing-jobs',
  'processing.finished': 'processing-results',
};

/** The stream that carries `event`; refuses an event missing from EVENT_STREAM. */
export function streamOf(event: EventName): StreamName {
  const stream: StreamName | undefined = EVENT_STREAM[event];
  if (stream === undefined) {
    throw new PvError('PV_INVALID_INPUT', `Unknown event "${String(event)}".`, {
      fix: 'Add the event to EventPayloads and EVENT_STREAM in src/infra/bus/event-bus.ts.',
    });
  }
  return stream;
}

export interface BusMessage<E extends EventName = EventName> {
  /** Unique per stream, increasing in publish order. */
  id: string;
  event: E;
  payload: EventPayloads[E];
  /** 1 on first delivery. */
  attempt: number;
  publishedAt: Date;
}

export interface ConsumerOptions {
  /** Durable name: deliveries and acks persist under it across restarts. */
  durable: string;
  stream: StreamName;
  /** Deliveries before the message is dead-lettered. Default 5. */
  maxDeliver?: number;
  /** Redelivery delays by attempt (the last repeats). Default [1s, 5s, 30s]. */
  backoffMs?: number[];
  /** How long an unacked delivery may take before it is redelivered. Default 60s. */
  ackWaitMs?: number;
  /** Messages handled at once. Default 1. */
  concurrency?: number;
  /**
   * Renew the lease of a delivery while its handler runs (every ackWaitMs / 3), so jobs longer
   * than ackWaitMs are not redelivered while a live process works on them; a process that dies
   * stops renewing, and its delivery comes again after ackWaitMs. A hung handler then holds its
   * delivery until its own timeout. Default false.
   */
  renewLease?: boolean;
}

/**
 * Refuses a durable name that is not valid on every adapter. JetStream consumer names exclude
 * `.`, `*`, `>`, whitespace and path separators, and the NATS adapter uses the name as a subject
 * token; the embedded bus refuses the same names so that a name never works only embedded.
 */
export function checkDurableName(durable: string): void {
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(durable)) {
    throw new PvError('PV_INVALID_INPUT', `Invalid durable consumer name "${durable}".`, {
      fix: 'Use 1 to 128 letters, digits, "-" or "_".',
    });
  }
}

/** The error for a durable name that already reads another stream: a durable reads one stream on every adapter. */
export function durableTaken(durable: string, stream: StreamName): PvError {
  return new PvError('PV_CONFLICT', `Durable consumer "${durable}" already reads stream "${stream}".`, {
    fix: 'Give each consumer of a different stream its own durable name.',
  });
}

/** ConsumerOptions with every default applied. */
export type ConsumerSettings = Required<ConsumerOptions>;

const CONSUMER_DEFAULTS = { maxDeliver: 5, backoffMs: [1_000, 5_000, 30_000], ackWaitMs: 60_000, concurrency: 1, renewLease: false };

/** Applies the defaults documented on ConsumerOptions and refuses settings no adapter can honour. */
export function consumerSettings(options: ConsumerOptions): ConsumerSettings {
  const consumer: ConsumerSettings = {
    durable: options.durable,
    stream: options.stream,
    maxDeliver: options.maxDeliver ?? CONSUMER_DEFAULTS.maxDeliver,
    backoffMs: options.backoffMs ?? CONSUMER_DEFAULTS.backoffMs,
    ackWaitMs: options.ackWaitMs ?? CONSUMER_DEFAULTS.ackWaitMs,
    concurrency: options.concurrency ?? CONSUMER_DEFAULTS.concurrency,
    renewLease: options.renewLease ?? CONSUMER_DEFAULTS.renewLease,
  };
  checkDurableName(consumer.durable);
  const invalid = (what: string) => new PvError('PV_INVALID_INPUT', `Consumer "${consumer.durable}": ${what}.`);
  if (!Number.isSafeInteger(consumer.maxDeliver) || consumer.maxDeliver < 1) throw invalid('maxDeliver must be an integer >= 1');
  if (!Number.isSafeInteger(consumer.concurrency) || consumer.concurrency < 1) throw invalid('concurrency must be an integer >= 1');
  if (!(consumer.ackWaitMs > 0)) throw invalid('ackWaitMs must be positive');
  if (consumer.backoffMs.some((ms) => !(ms >= 0))) throw invalid('backoffMs must hold non-negative delays');
  return consumer;
}

/** How long a delivery that failed on `attempt` waits before it is delivered again. */
export function redeliveryDelay(consumer: ConsumerSettings, attempt: number): number {
  return consumer.backoffMs[Math.min(attempt, consumer.backoffMs.length) - 1] ?? 0;
}

/** The dead letter's error when the last delivery was never acked: the handler hung or its process died. */
export const ACK_TIMEOUT_ERROR = 'not acknowledged within ackWaitMs (the handler did not finish or its process stopped)';

/** What a dead letter records of a handler's failure. */
export function failureText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Resolving acks the message; throwing schedules a redelivery (or dead-letters it). */
export type MessageHandler = (message: BusMessage) => Promise<void>;

export interface Subscription {
  /** Stops taking new messages and waits for the handlers in flight. */
  stop(): Promise<void>;
}

export interface DeadLetter {
  durable: string;
  message: BusMessage;
  error: string;
}

export interface EventBus {
  publish<E extends EventName>(event: E, payload: EventPayloads[E]): Promise<void>;
  /**
   * Creates a durable consumer if it does not exist, without subscribing: messages published
   * from now on are kept for it until some process subscribes under that name. A work queue is
   * declared by its producer, so no job is lost to workers that have not started yet.
   */
  declare(durable: string, stream: StreamName): Promise<void>;
  subscribe(options: ConsumerOptions, handler: MessageHandler): Promise<Subscription>;
  /** Messages that exhausted their deliveries, for operators and tests. */
  deadLetters(durable: string): Promise<DeadLetter[]>;
  close(): Promise<void>;
}
