import { setTimeout as sleep } from 'node:timers/promises';
// @nats-io/* v3, not the `nats` package: v3 is the maintained line of the NATS JavaScript client,
// split into modules (transport, JetStream, KV...) that share one core; `nats` is its legacy v2 line.
import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type ConsumerMessages,
  type Consumer as JsConsumer,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type StreamConfig,
} from '@nats-io/jetstream';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { PvError } from '../../core/errors.js';
import { type Announcement, type AnnouncementListener, type ChangeFanout, parseAnnouncement } from './change-fanout.js';
import {
  ACK_TIMEOUT_ERROR,
  checkDurableName,
  consumerSettings,
  durableTaken,
  failureText,
  redeliveryDelay,
  RETENTION_MS,
  streamOf,
  STREAMS,
  type BusMessage,
  type ConsumerOptions,
  type ConsumerSettings,
  type DeadLetter,
  type EventBus,
  type EventName,
  type EventPayloads,
  type MessageHandler,
  type StreamName,
  type Subscription,
} from './event-bus.js';

/**
 * The cluster EventBus: NATS JetStream. Each stream of DESIGN section 5 is a JetStream stream
 * (`<PREFIX>_FILE_UPLOADS`, subjects `<prefix>.file-uploads.<event>`) keeping messages 7 days;
 * each durable is a durable pull consumer with explicit acks, shared by every process that
 * subscribes under its name. Dead letters go to a sixth stream, `<PREFIX>_DEAD_LETTERS`, on the
 * subject `<prefix>.dead-letters.<durable>`, and are kept until an operator purges them (the
 * embedded bus keeps them too).
 *
 * Redelivery is decided here, not by JetStream's consumer settings:
 * - A handler's failure naks with the delay from backoffMs. JetStream's consumer `backoff` would
 *   apply to ack-wait expiries only, and setting it replaces ack_wait with its first step.
 * - The consumer's max_deliver is unlimited, and the bus counts: a delivery past maxDeliver means
 *   the last attempt was never acked (its handler hung or its process died), and it is
 *   dead-lettered without running the handler. JetStream would instead stop delivering at
 *   max_deliver and only say so in an advisory that nobody may be listening to; counting here
 *   keeps the message until some process has moved it to the dead letters, and a dead-letter
 *   publish that fails is retried.
 */

export interface NatsEventBusOptions {
  /** One server or a comma-separated list: `nats://host:4222`. Credentials in it are never shown in errors. */
  url: string;
  /**
   * Namespaces subjects (`<prefix>.`) and stream names (`<PREFIX>_`), so that several deployments,
   * or test runs, share one NATS. Lower-case letters, digits and inner "-". Default "photovault".
   */
  prefix?: string;
  /** Receives failures of background work that has no caller to throw to. Default writes to stderr. */
  onError?: (error: unknown) => void;
}

const DEFAULT_PREFIX = 'photovault';
export const DEAD_LETTERS = 'dead-letters';
/** How long one pull request waits on the server for a message (the client's recommended default). */
const PULL_EXPIRES_MS = 30_000;
/** Pause before pulling again after a failed pull (NATS restarting, consumer being recreated). */
const PULL_RETRY_MS = 1_000;

/** How long close() waits for the connection to drain. */
const DRAIN_TIMEOUT_MS = 5_000;

/** JetStream API error codes this adapter tells apart. */
const STREAM_NAME_IN_USE = 10058;
const CONSUMER_ALREADY_EXISTS = 10148;
const CONSUMER_NOT_FOUND = 10014;
const STREAM_NOT_FOUND = 10059;

/** A dead letter as stored: the message as it was published, with what became of it. */
interface DeadLetterRecord {
  id: string;
  event: string;
  /** The published payload's JSON text, unparsed: a payload that could not be decoded is kept as it was. */
  payload: string;
  attempt: number;
  /** Epoch ms. */
  publishedAt: number;
  error: string;
}

export class NatsEventBus implements EventBus, ChangeFanout {
  private readonly loops = new Set<ConsumerLoop>();
  private closed = false;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly prefix: string,
    private readonly onError: (error: unknown) => void,
  ) {}

  /** Connects, and creates the streams or brings their settings up to date. */
  static async open(options: NatsEventBusOptions): Promise<NatsEventBus> {
    const prefix = options.prefix ?? DEFAULT_PREFIX;
    if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(prefix)) {
      throw new PvError('PV_INVALID_INPUT', `Invalid NATS subject prefix "${prefix}".`, {
        fix: 'Use lower-case letters and digits, optionally joined by single "-".',
      });
    }
    const servers = options.url.split(',').map((server) => server.trim());
    const shown = servers.map(withoutCredentials).join(',');
    let nc: NatsConnection;
    try {
      // Reconnect for as long as it takes: a server process outlives a NATS restart.
      nc = await connect({ servers, name: 'photovault', maxReconnectAttempts: -1 });
    } catch (error) {
      throw new PvError('PV_BACKEND_UNREACHABLE', `Cannot reach NATS at ${shown}: ${failureText(error)}.`, {
        fix: 'Start NATS (nats-server -js) or correct PHOTOVAULT_NATS_URL.',
      });
    }
    try {
      const jsm = await jetstreamManager(nc).catch((error: unknown) => {
        throw new PvError('PV_BACKEND_UNREACHABLE', `NATS at ${shown} offers no JetStream: ${failureText(error)}.`, {
          fix: 'Enable JetStream on the NATS server (nats-server -js, or a jetstream block in its configuration).',
        });
      });
      const bus = new NatsEventBus(
        nc,
        jetstream(nc),
        jsm,
        prefix,
        options.onError ?? ((error) => console.error('photovault: event bus:', error)),
      );
      await Promise.all([
        ...STREAMS.map((stream) =>
          bus.ensureStream({ name: bus.streamName(stream), subjects: [`${prefix}.${stream}.>`], max_age: nanos(RETENTION_MS) }),
        ),
        // allow_direct: deadLetters() reads them with direct gets, without a consumer.
        bus.ensureStream({ name: bus.streamName(DEAD_LETTERS), subjects: [`${prefix}.${DEAD_LETTERS}.>`], max_age: 0, allow_direct: true }),
      ]);
      return bus;
    } catch (error) {
      await nc.close();
      throw error;
    }
  }

  private streamName(stream: StreamName | typeof DEAD_LETTERS): string {
    return jetStreamName(this.prefix, stream);
  }

  async publish<E extends EventName>(event: E, payload: EventPayloads[E]): Promise<void> {
    const stream = streamOf(event);
    // Resolves on JetStream's acknowledgement: the message is stored.
    await this.js.publish(`${this.prefix}.${stream}.${event}`, JSON.stringify(payload));
  }

  async declare(durable: string, stream: StreamName): Promise<void> {
    checkDurableName(durable);
    await this.refuseOtherStreams(durable, stream);
    // An existing consumer keeps its settings: they are its subscribers' (ack wait).
    if (await this.consumerExists(stream, durable)) return;
    await this.jsm.consumers
      .add(this.streamName(stream), this.consumerConfig(consumerSettings({ durable, stream })))
      .catch((error: unknown) => {
        if (!isApiError(error, CONSUMER_ALREADY_EXISTS)) throw error;
      });
  }

  async subscribe(options: ConsumerOptions, handler: MessageHandler): Promise<Subscription> {
    const settings = consumerSettings(options);
    await this.refuseOtherStreams(settings.durable, settings.stream);
    const streamName = this.streamName(settings.stream);
    const config = this.consumerConfig(settings);
    try {
      await this.jsm.consumers.add(streamName, config);
    } catch (error) {
      // Declared earlier, or subscribed with other settings: the last subscriber's settings hold.
      if (!isApiError(error, CONSUMER_ALREADY_EXISTS)) throw error;
      await this.jsm.consumers.update(streamName, settings.durable, { ack_wait: config.ack_wait, max_deliver: config.max_deliver });
    }
    const consumer = await this.js.consumers.get(streamName, settings.durable);
    const eventStart = `${this.prefix}.${settings.stream}.`.length;
    const loop = new ConsumerLoop(settings, consumer, handler, {
      decode: (msg) => toMessage(msg, eventStart),
      deadLetter: (msg, attempt, error) => this.deadLetter(settings.durable, msg, eventStart, attempt, error),
      onError: (error) => {
        // After close() the connection is gone; unacked deliveries come back after ackWait.
        if (!this.closed) this.onError(error);
      },
    });
    this.loops.add(loop);
    loop.start();
    return {
      stop: async () => {
        this.loops.delete(loop);
        await loop.stop();
      },
    };
  }

  async deadLetters(durable: string): Promise<DeadLetter[]> {
    checkDurableName(durable);
    const stream = this.streamName(DEAD_LETTERS);
    const subject = this.deadLetterSubject(durable);
    const letters: DeadLetter[] = [];
    for (let seq = 1; ;) {
      const stored = await this.jsm.direct.getMessage(stream, { seq, next_by_subj: subject });
      if (stored === null) break;
      const record = stored.json<DeadLetterRecord>();
      letters.push({
        durable,
        message: {
          id: record.id,
          event: record.event as EventName,
          payload: parseOr(record.payload),
          attempt: record.attempt,
          publishedAt: new Date(record.publishedAt),
        },
        error: record.error,
      });
      seq = stored.seq + 1;
    }
    // In the order the messages were published, as the embedded bus lists them.
    return letters.sort((a, b) => Number(a.message.id) - Number(b.message.id));
  }

  async announce(announcement: Announcement): Promise<void> {
    this.nc.publish(this.announcementSubject(), JSON.stringify(announcement));
  }

  async listen(listener: AnnouncementListener): Promise<() => void> {
    const subscription = this.nc.subscribe(this.announcementSubject(), {
      callback: (error, msg) => {
        try {
          if (error) throw error;
          const announcement = parseAnnouncement(msg.json<unknown>());
          if (!announcement) throw new Error(`malformed announcement on ${msg.subject}: ${msg.string()}`);
          listener(announcement);
        } catch (failure) {
          this.onError(failure);
        }
      },
    });
    // Once the server has the interest, every later announcement reaches this listener.
    await this.nc.flush();
    return () => subscription.unsubscribe();
  }

  /**
   * Stops every subscription from pulling and drains the connection. Handlers still running are
   * not awaited (stop() the subscriptions first for a graceful shutdown); their deliveries are
   * redelivered after ackWait, exactly as after a crash.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const loop of this.loops) loop.abandon();
    this.loops.clear();
    if (this.nc.isClosed()) return;
    // Draining flushes the acks and announcements still buffered; it waits for a connection, so
    // while NATS is away it is cut short (what it would have flushed is redelivered or missed).
    const drained = this.nc.drain().then(
      () => true,
      (error: unknown) => {
        this.onError(error);
        return false;
      },
    );
    if (!(await Promise.race([drained, sleep(DRAIN_TIMEOUT_MS, false, { ref: false })]))) await this.nc.close();
  }

  private announcementSubject(): string {
    return `${this.prefix}.announcements`;
  }

  private deadLetterSubject(durable: string): string {
    return `${this.prefix}.${DEAD_LETTERS}.${durable}`;
  }

  private consumerConfig(settings: ConsumerSettings): Partial<ConsumerConfig> {
    return {
      durable_name: settings.durable,
      ack_policy: AckPolicy.Explicit,
      // A durable gets what is published after it first existed, as on the embedded bus.
      deliver_policy: DeliverPolicy.New,
      ack_wait: nanos(settings.ackWaitMs),
      // Unlimited on the server: the bus enforces maxDeliver itself (see the class comment).
      max_deliver: -1,
    };
  }

  /** Creates the stream, or updates the settings photovault owns and leaves the rest (replicas, limits) to operators. */
  private async ensureStream(wanted: Pick<StreamConfig, 'name' | 'subjects' | 'max_age'> & Partial<StreamConfig>): Promise<void> {
    const info = () =>
      this.jsm.streams.info(wanted.name).catch((error: unknown) => {
        if (isApiError(error, STREAM_NOT_FOUND)) return undefined;
        throw error;
      });
    let existing = await info();
    if (existing === undefined) {
      try {
        await this.jsm.streams.add({ ...wanted, retention: RetentionPolicy.Limits, storage: StorageType.File });
        return;
      } catch (error) {
        // Another process starting at the same moment created it first: update theirs if need be.
        if (!isApiError(error, STREAM_NAME_IN_USE)) throw error;
        existing = await info();
        if (existing === undefined) throw error;
      }
    }
    const current = existing.config;
    const differs = (Object.keys(wanted) as (keyof typeof wanted)[]).some(
      (key) => JSON.stringify(current[key] ?? null) !== JSON.stringify(wanted[key] ?? null),
    );
    if (differs) await this.jsm.streams.update(wanted.name, wanted);
  }

  private async consumerExists(stream: StreamName, durable: string): Promise<boolean> {
    try {
      await this.jsm.consumers.info(this.streamName(stream), durable);
      return true;
    } catch (error) {
      if (isApiError(error, CONSUMER_NOT_FOUND)) return false;
      throw error;
    }
  }

  /** JetStream scopes consumer names per stream; the port gives a durable one stream. */
  private async refuseOtherStreams(durable: string, stream: StreamName): Promise<void> {
    const others = STREAMS.filter((other) => other !== stream);
    const exists = await Promise.all(others.map((other) => this.consumerExists(other, durable)));
    const taken = others.find((_, index) => exists[index]);
    if (taken !== undefined) throw durableTaken(durable, taken);
  }

  /**
   * Stores the message with its last error under the durable's dead-letter subject, then
   * terminates the delivery. The msgID makes the store idempotent (within the stream's duplicate
   * window) if a terminate is lost and the delivery comes back to be dead-lettered again.
   */
  private async deadLetter(durable: string, msg: JsMsg, eventStart: number, attempt: number, error: string): Promise<void> {
    const record: DeadLetterRecord = {
      id: String(msg.info.streamSequence),
      event: msg.subject.slice(eventStart),
      payload: msg.string(),
      attempt,
      publishedAt: publishedAt(msg).getTime(),
      error,
    };
    await this.js.publish(this.deadLetterSubject(durable), JSON.stringify(record), { msgID: `${durable}-${record.id}` });
    msg.term();
  }
}

interface LoopPort {
  decode(msg: JsMsg): BusMessage;
  deadLetter(msg: JsMsg, attempt: number, error: string): Promise<void>;
  onError(error: unknown): void;
}

/**
 * One subscription: `concurrency` slots, each pulling one message at a time and pulling the next
 * only once its handler has settled. Nothing waits in a client-side buffer, where its ack wait
 * would run out and where other processes sharing the durable could not get it.
 */
class ConsumerLoop {
  private readonly slots: Promise<void>[] = [];
  private readonly pulls = new Set<ConsumerMessages>();
  private readonly renewers = new Set<NodeJS.Timeout>();
  private readonly halting = new AbortController();

  constructor(
    private readonly settings: ConsumerSettings,
    private readonly consumer: JsConsumer,
    private readonly handler: MessageHandler,
    private readonly port: LoopPort,
  ) {}

  start(): void {
    for (let slot = 0; slot < this.settings.concurrency; slot++) this.slots.push(this.runSlot());
  }

  /**
   * Stops pulling; handlers in flight keep running. A cancelled pull is dropped by the server,
   * which delivers nothing to a subscription that has gone; a message already on its way comes
   * back after ackWait.
   */
  halt(): void {
    this.halting.abort();
    for (const pull of this.pulls) void pull.close();
  }

  /** Stops pulling and waits for the handlers in flight, renewing their leases meanwhile, and their settlement. */
  async stop(): Promise<void> {
    this.halt();
    await Promise.all(this.slots);
  }

  /** Stops pulling and renewing, as a crash would: the deliveries in flight come back after ackWait. */
  abandon(): void {
    this.halt();
    for (const renewer of this.renewers) clearInterval(renewer);
  }

  private async runSlot(): Promise<void> {
    while (!this.halting.signal.aborted) {
      let msg: JsMsg | null;
      try {
        msg = await this.pull();
      } catch (error) {
        if (this.halting.signal.aborted) return;
        this.port.onError(error);
        await sleep(PULL_RETRY_MS, undefined, { signal: this.halting.signal }).catch(() => {});
        continue;
      }
      // A pulled message is run even if halt() came meanwhile: it is delivered to us now.
      if (msg !== null) await this.handle(msg);
    }
  }

  /** One message, or null when the pull expired empty or was cancelled. */
  private async pull(): Promise<JsMsg | null> {
    const batch = await this.consumer.fetch({ max_messages: 1, expires: PULL_EXPIRES_MS });
    this.pulls.add(batch);
    try {
      // Not awaited: the close is queued in the iterator, and completes as the loop below reads it.
      if (this.halting.signal.aborted) void batch.close();
      for await (const msg of batch) return msg;
      return null;
    } finally {
      this.pulls.delete(batch);
    }
  }

  private async handle(msg: JsMsg): Promise<void> {
    const attempt = msg.info.deliveryCount;
    try {
      if (attempt > this.settings.maxDeliver) {
        // The last attempt was never acked; its handler is not run again.
        await this.port.deadLetter(msg, attempt - 1, ACK_TIMEOUT_ERROR);
        return;
      }
      const failure = await this.run(msg);
      // Settled only after the handler returned: a crash before this leaves the delivery unacked,
      // and it comes again after ackWait.
      if (failure === undefined) await msg.ackAck();
      else if (attempt >= this.settings.maxDeliver) await this.port.deadLetter(msg, attempt, failureText(failure.error));
      else msg.nak(redeliveryDelay(this.settings, attempt));
    } catch (error) {
      // Unsettled: the delivery comes again after ackWait (past maxDeliver, to be dead-lettered).
      this.port.onError(error);
    }
  }

  /** Runs the handler, renewing the delivery's ack wait meanwhile if asked; returns its failure. */
  private async run(msg: JsMsg): Promise<{ error: unknown } | undefined> {
    let renewer: NodeJS.Timeout | undefined;
    if (this.settings.renewLease) {
      renewer = setInterval(() => {
        try {
          msg.working();
        } catch (error) {
          this.port.onError(error);
        }
      }, this.settings.ackWaitMs / 3);
      this.renewers.add(renewer);
    }
    try {
      await this.handler(this.port.decode(msg));
      return undefined;
    } catch (error) {
      return { error };
    } finally {
      clearInterval(renewer);
      if (renewer) this.renewers.delete(renewer);
    }
  }
}

/** The JetStream stream that holds `stream` (or the dead letters) under `prefix`. */
export function jetStreamName(prefix: string, stream: StreamName | typeof DEAD_LETTERS): string {
  // A prefix has no "_", so distinct prefixes never give the same name.
  return `${prefix}_${stream}`.toUpperCase().replaceAll('-', '_');
}

function toMessage(msg: JsMsg, eventStart: number): BusMessage {
  return {
    id: String(msg.info.streamSequence),
    // The subject is `<prefix>.<stream>.<event>`, written by publish() from a typed EventName.
    event: msg.subject.slice(eventStart) as EventName,
    payload: msg.json<EventPayloads[EventName]>(),
    attempt: msg.info.deliveryCount,
    publishedAt: publishedAt(msg),
  };
}

function publishedAt(msg: JsMsg): Date {
  return new Date(Number(msg.timestampNanos / 1_000_000n));
}

function parseOr(text: string): EventPayloads[EventName] {
  try {
    return JSON.parse(text) as EventPayloads[EventName];
  } catch {
    // Kept as its text: an operator can still read what could not be decoded.
    return text as unknown as EventPayloads[EventName];
  }
}

function isApiError(error: unknown, code: number): boolean {
  return error instanceof JetStreamApiError && error.code === code;
}

/** The server URL with any user, password or token replaced. */
function withoutCredentials(server: string): string {
  return server.replace(/^([a-z]+:\/\/)[^@/]*@/i, '$1***@');
}
