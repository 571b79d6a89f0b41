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
