import { EventEmitter } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { Kysely, sql, SqliteDialect, type Generated } from 'kysely';
import { Batcher } from '../../core/batcher.js';
import { withStatementCache } from '../db/statement-cache.js';
import { checkpointInBackground } from '../db/wal-checkpointer.js';
import {
  ACK_TIMEOUT_ERROR,
  checkDurableName,
  durableTaken,
  RETENTION_MS,
  consumerSettings,
  failureText,
  redeliveryDelay,
  streamOf,
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
import type { Announcement, AnnouncementListener, ChangeFanout } from './change-fanout.js';

/**
 * The embedded EventBus: a durable queue in its own SQLite file (`<dataDir>/bus.db`, apart from
 * the metadata so bus churn never contends with metadata writes), with an in-process wake-up so
 * a publish reaches a subscriber of the same process at once. Other processes sharing the file
 * see new messages on their next poll.
 *
 * A message is one `messages` row; each durable consumer of its stream gets one `deliveries` row,
 * written in the same transaction as the message, and deleted when its handler acks. A delivery
 * is claimed by setting a lease; a claim whose process dies simply lets the lease run out, after
 * which the delivery is claimable again. That is the whole at-least-once mechanism: nothing is
 * ever acked before its handler has resolved.
 */

interface BusTables {
  messages: {
    /** AUTOINCREMENT so an id is never reused after pruning: handlers may dedupe by id. */
    id: Generated<number>;
    stream: string;
    event: string;
    /** JSON. */
    payload: string;
    /** Epoch ms. */
    published_at: number;
  };
  consumers: {
    durable: string;
    stream: string;
    created_at: number;
  };
  deliveries: {
    durable: string;
    message_id: number;
    /** Deliveries started so far, counted at claim time so a crash mid-handler still counts. */
    attempts: Generated<number>;
    /** Epoch ms before which the delivery is not claimed (redelivery backoff). */
    available_at: number;
    /** Epoch ms until which a claim holds the delivery; 0 when unclaimed. */
    lease_until: Generated<number>;
    state: Generated<'pending' | 'dead'>;
    last_error: string | null;
  };
}

export interface SqliteEventBusOptions {
  /** How often subscribers look for work published by other processes, or due again. Default 250. */
  pollIntervalMs?: number;
  /** Clock for every stored timestamp (epoch ms). Default Date.now. */
  now?: () => number;
  /**
   * Receives failures of background work that has no caller to throw to: claiming, acking,
   * pruning. The affected work is retried (next poll, or redelivery after ackWait). Default
   * writes to stderr.
   */
  onError?: (error: unknown) => void;
}

const PRUNE_INTERVAL_MS = 60 * 60 * 1000;
/** How long a write waits for another connection's write lock before failing. */
const LOCK_WAIT_MS = 5_000;

export class SqliteEventBus implements EventBus, ChangeFanout {
  /** ChangeFanout: the embedded server is one process, so in-process is every process. */
  private readonly announcements = new EventEmitter().setMaxListeners(0);
  private readonly dispatchers = new Set<Dispatcher>();
  private readonly pruner: NodeJS.Timeout;
  private closed = false;
  /**
   * Publishes made while another is being committed go together in the next transaction: one
   * WAL flush (an fsync on the event loop) for a burst, where each took its own.
   */
  private readonly publishes = new Batcher<{ stream: StreamName; event: EventName; payload: unknown }, void>((batch) =>
    this.insertMessages(batch),
  );
  /** Acks, per durable, likewise: one statement for those that come together. */
  private readonly acks = new Map<string, Batcher<number, void>>();

  /** The publish transaction (insertMessages), prepared once: a first sync publishes thousands of messages. */
  private readonly storeMessages: (entries: PublishEntry[], now: number) => number[];

  private constructor(
    private readonly db: Kysely<BusTables>,
    sqlite: Database.Database,
    private readonly pollIntervalMs: number,
    private readonly now: () => number,
    private readonly onError: (error: unknown) => void,
  ) {
    this.pruner = setInterval(() => this.prune().catch(this.onError), PRUNE_INTERVAL_MS);
    this.pruner.unref();
    this.storeMessages = publishTransaction(sqlite);
  }

  /** Opens (creating if needed) the bus stored in `file`. */
  static async open(file: string, options: SqliteEventBusOptions = {}): Promise<SqliteEventBus> {
    await mkdir(dirname(file), { recursive: true });
    const sqlite = new Database(file);
    // WAL lets readers run beside the one writer. synchronous stays at SQLite's FULL: a publish
    // that returned must survive a power cut (claims and settlements relax it: see settling()).
    // busy_timeout is 0 on purpose: better-sqlite3 would
    // wait for a lock synchronously, freezing the event loop, and with two connections in one
    // process (Kysely transactions span several promise turns) it would wait on a holder that
    // cannot run until the wait ends. Writers wait asynchronously instead (retryWhileLocked).
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('busy_timeout = 0');
    const checkpoints = checkpointInBackground(sqlite, file);
    const database = withStatementCache(sqlite);
    const close = () => {
      checkpoints.stop();
      database.close();
    };
    const db = new Kysely<BusTables>({ dialect: new SqliteDialect({ database: { prepare: (sql) => database.prepare(sql), close } }) });
    try {
      await retryWhileLocked(() => createTables(db));
    } catch (error) {
      await db.destroy();
      throw error;
    }
    const bus = new SqliteEventBus(
      db,
      sqlite,
      options.pollIntervalMs ?? 250,
      options.now ?? Date.now,
      options.onError ?? ((error) => console.error('photovault: event bus:', error)),
    );
    await bus.prune();
    return bus;
  }

  async publish<E extends EventName>(event: E, payload: EventPayloads[E]): Promise<void> {
    await this.publishes.add({ stream: streamOf(event), event, payload });
  }

  /**
   * Stores messages with the deliveries owed to every durable of their streams, in one
   * transaction: a message is never visible without them, and a durable created later never
   * gets it. A subscriber of this process that is idle takes a message straight from here: its
   * delivery is stored already claimed by it (attempt 1, leased), exactly as a claim would have
   * left it, and handed over once committed, which spares the claim transaction. The others are
   * woken to claim.
   */
  private async insertMessages(batch: { stream: StreamName; event: EventName; payload: unknown }[]): Promise<{ value: void }[]> {
    const entries: PublishEntry[] = batch.map(({ stream, event, payload }) => ({
      stream,
      event,
      json: JSON.stringify(payload),
      takers: [],
    }));
    for (const entry of entries) {
      const durables = new Set<string>();
      for (const dispatcher of this.dispatchers) {
        if (dispatcher.stream !== entry.stream || durables.has(dispatcher.durable) || !dispatcher.reserve()) continue;
        durables.add(dispatcher.durable);
        entry.takers.push(dispatcher);
      }
    }
    const now = this.now();
    let ids: number[];
    try {
      // Synchronous, so it runs whole within the Kysely connection it holds: no other statement
      // of this process interleaves.
      ids = await retryWhileLocked(() => this.db.connection().execute(async () => this.storeMessages(entries, now)));
    } catch (error) {
      for (const entry of entries) for (const taker of entry.takers) taker.release();
      throw error;
    }
    const woken = new Set<Dispatcher>();
    for (const [at, entry] of entries.entries()) {
      const message = toMessage({ id: ids[at]!, event: entry.event, payload: entry.json, published_at: now, attempts: 1 });
      for (const taker of entry.takers) taker.deliver(message);
      for (const dispatcher of this.dispatchers) {
        if (dispatcher.stream === entry.stream && !entry.takers.includes(dispatcher)) woken.add(dispatcher);
      }
    }
    for (const dispatcher of woken) dispatcher.wake();
    return batch.map(() => ({ value: undefined }));
  }

  async declare(durable: string, stream: StreamName): Promise<void> {
    checkDurableName(durable);
    await retryWhileLocked(() =>
      this.db
        .insertInto('consumers')
        .values({ durable, stream, created_at: this.now() })
        .onConflict((oc) => oc.column('durable').doNothing())
        .execute(),
    );
    const existing = await this.db.selectFrom('consumers').select('stream').where('durable', '=', durable).executeTakeFirstOrThrow();
    if (existing.stream !== stream) {
      throw durableTaken(durable, existing.stream as StreamName);
    }
  }

  async subscribe(options: ConsumerOptions, handler: MessageHandler): Promise<Subscription> {
    const consumer = consumerSettings(options);
    await this.declare(consumer.durable, consumer.stream);

    const dispatcher = new Dispatcher(consumer, handler, this.pollIntervalMs, {
      claim: (limit) => this.claim(consumer, limit),
      ack: (message) => this.ack(consumer, message),
      nack: (message, error) => this.nack(consumer, message, error),
      renew: (message) => this.renew(consumer, message),
      onError: (error) => {
        // After close() the database is gone; the lease still protects the delivery.
        if (!this.closed) this.onError(error);
      },
    });
    this.dispatchers.add(dispatcher);
    dispatcher.start();
    return {
      stop: async () => {
        this.dispatchers.delete(dispatcher);
        await dispatcher.stop();
      },
    };
  }

  async deadLetters(durable: string): Promise<DeadLetter[]> {
    const rows = await this.db
      .selectFrom('deliveries')
      .innerJoin('messages', 'messages.id', 'deliveries.message_id')
      .select(['messages.id', 'messages.event', 'messages.payload', 'messages.published_at'])
      .select(['deliveries.attempts', 'deliveries.last_error'])
      .where('deliveries.durable', '=', durable)
      .where('deliveries.state', '=', 'dead')
      .orderBy('deliveries.message_id')
      .execute();
    return rows.map((row) => ({ durable, message: toMessage(row), error: row.last_error ?? '' }));
  }

  async announce(announcement: Announcement): Promise<void> {
    this.announcements.emit('announced', announcement);
  }

  async listen(listener: AnnouncementListener): Promise<() => void> {
    // One listener's failure must not keep the announcement from the others (emit() stops at a throw).
    const guarded = (announcement: Announcement) => {
      try {
        listener(announcement);
      } catch (error) {
        this.onError(error);
      }
    };
    this.announcements.on('announced', guarded);
    return () => this.announcements.off('announced', guarded);
  }

  /**
   * Stops every subscription from claiming and closes the database. Handlers still running are
   * not awaited (stop() the subscriptions first for a graceful shutdown); their deliveries are
   * redelivered after ackWait, exactly as after a crash.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pruner);
    this.announcements.removeAllListeners();
    await Promise.all([...this.dispatchers].map((dispatcher) => dispatcher.halt()));
    this.dispatchers.clear();
    await this.db.destroy();
  }

  /** Deletes messages past retention that no delivery (pending or dead) still refers to: one still owed is kept longer. */
  async prune(): Promise<number> {
    const result = await retryWhileLocked(() =>
      this.db
        .deleteFrom('messages')
        .where('published_at', '<', this.now() - RETENTION_MS)
        .where((eb) =>
          eb.not(
            eb.exists(eb.selectFrom('deliveries').select('deliveries.message_id').whereRef('deliveries.message_id', '=', 'messages.id')),
          ),
        )
        .executeTakeFirst(),
    );
    return Number(result.numDeletedRows);
  }

  /** Whether a claim would find anything to take or to let die (dueDeliveries covers both). */
  private async anythingDue(consumer: ConsumerSettings): Promise<boolean> {
    return (await dueDeliveries(this.db, consumer.durable, this.now()).limit(1).executeTakeFirst()) !== undefined;
  }

  /**
   * Leases up to `limit` due deliveries and returns their messages. The first statement is a
   * write, so the transaction holds SQLite's write lock from its start: two processes can never
   * claim the same delivery, and there is no read-to-write lock upgrade to fail.
   */
  private async claim(consumer: ConsumerSettings, limit: number): Promise<BusMessage[]> {
    // Most claims are a dispatcher's poll (every pollIntervalMs, for each durable of every
    // process) and find nothing: a read says so without a write transaction.
    if (!(await this.anythingDue(consumer))) return [];
    return this.settling((db) =>
      db.transaction().execute(async (trx) => {
        const now = this.now();
        // A last attempt whose lease ran out without an ack (handler hung, or its process died)
        // is not delivered again: it is dead.
        await trx
          .updateTable('deliveries')
          .set({ state: 'dead', lease_until: 0, last_error: ACK_TIMEOUT_ERROR })
          .where('durable', '=', consumer.durable)
          .where('state', '=', 'pending')
          .where('attempts', '>=', consumer.maxDeliver)
          .where('lease_until', '>', 0)
          .where('lease_until', '<=', now)
          .execute();
        const claimed = await trx
          .updateTable('deliveries')
          .set((eb) => ({ attempts: eb('attempts', '+', 1), lease_until: now + consumer.ackWaitMs }))
          .where('durable', '=', consumer.durable)
          .where('message_id', 'in', dueDeliveries(trx, consumer.durable, now).orderBy('message_id').limit(limit))
          .returning(['message_id', 'attempts'])
          .execute();
        if (claimed.length === 0) return [];
        const attempts = new Map(claimed.map((row) => [row.message_id, row.attempts]));
        const messages = await trx
          .selectFrom('messages')
          .select(['id', 'event', 'payload', 'published_at'])
          .where('id', 'in', [...attempts.keys()])
          .orderBy('id')
          .execute();
        return messages.map((row) => toMessage({ ...row, attempts: attempts.get(row.id) ?? 1 }));
      }),
    );
  }

  /**
   * Runs a claim, ack, nack or renewal (with retryWhileLocked) with synchronous=NORMAL: its
   * commit is not flushed on its own but with the next publish's (or at a checkpoint). A crash
   * of the process loses nothing (WAL); a power cut can undo the last of them, which at-least-once
   * delivery already covers: an undone claim or renewal lets the lease lapse sooner and the
   * delivery is claimed again, an undone ack redelivers a handled message, an undone nack or
   * claim forgets an attempt (so maxDeliver can be exceeded after a power cut). It spares the
   * WAL flush (an fsync on the event loop) that each of them cost: two of the three per upload.
   * The connection is held throughout, so no publish runs while the setting is relaxed.
   */
  private settling<T>(work: (db: Kysely<BusTables>) => Promise<T>): Promise<T> {
    return retryWhileLocked(() =>
      this.db.connection().execute(async (db) => {
        await sql`pragma synchronous = NORMAL`.execute(db);
        try {
          return await work(db);
        } finally {
          await sql`pragma synchronous = FULL`.execute(db);
        }
      }),
    );
  }

  private async ack(consumer: ConsumerSettings, message: BusMessage): Promise<void> {
    let acks = this.acks.get(consumer.durable);
    if (!acks) {
      acks = new Batcher<number, void>(async (ids) => {
        // Unconditional: the message has been handled, even if our lease ran out meanwhile and
        // another claim holds it now (that claim's own ack or nack then finds no row).
        await this.settling((db) =>
          db.deleteFrom('deliveries').where('durable', '=', consumer.durable).where('message_id', 'in', ids).execute(),
        );
        return ids.map(() => ({ value: undefined }));
      });
      this.acks.set(consumer.durable, acks);
    }
    await acks.add(Number(message.id));
  }

  private async renew(consumer: ConsumerSettings, message: BusMessage): Promise<void> {
    await this.settling((db) =>
      db
        .updateTable('deliveries')
        .set({ lease_until: this.now() + consumer.ackWaitMs })
        .where('durable', '=', consumer.durable)
        .where('message_id', '=', Number(message.id))
        // Fencing as in nack: only our own claim's lease is renewed.
        .where('attempts', '=', message.attempt)
        .where('state', '=', 'pending')
        .where('lease_until', '>', 0)
        .execute(),
    );
  }

  private async nack(consumer: ConsumerSettings, message: BusMessage, error: unknown): Promise<void> {
    const lastError = failureText(error);
    const dead = message.attempt >= consumer.maxDeliver;
    const backoff = redeliveryDelay(consumer, message.attempt);
    await this.settling((db) =>
      db
        .updateTable('deliveries')
        .set(
          dead
            ? { state: 'dead', lease_until: 0, last_error: lastError }
            : { available_at: this.now() + backoff, lease_until: 0, last_error: lastError },
        )
        .where('durable', '=', consumer.durable)
        .where('message_id', '=', Number(message.id))
        // Fencing: if our lease expired and the delivery was claimed again, that claim owns it.
        .where('attempts', '=', message.attempt)
        .where('state', '=', 'pending')
        .execute(),
    );
  }
}

interface DispatchPort {
  claim(limit: number): Promise<BusMessage[]>;
  ack(message: BusMessage): Promise<void>;
  nack(message: BusMessage, error: unknown): Promise<void>;
  renew(message: BusMessage): Promise<void>;
  onError(error: unknown): void;
}

/** A message being published, with the dispatchers of this process that take it straight away. */
interface PublishEntry {
  stream: StreamName;
  event: EventName;
  json: string;
  takers: Dispatcher[];
}

/**
 * Stores messages with a delivery for each durable of their streams, those for takers already
 * claimed by them (attempt 1, leased): one transaction, ids in order.
 */
function publishTransaction(sqlite: Database.Database): (entries: PublishEntry[], now: number) => number[] {
  const insertMessage = sqlite.prepare('insert into messages (stream, event, payload, published_at) values (?, ?, ?, ?)');
  const insertDeliveries = sqlite.prepare(
    'insert into deliveries (durable, message_id, available_at) select durable, ?, ? from consumers where stream = ?',
  );
  const leaseToTaker = sqlite.prepare('update deliveries set attempts = 1, lease_until = ? where durable = ? and message_id = ?');
  const store = sqlite.transaction((entries: PublishEntry[], now: number) =>
    entries.map(({ stream, event, json, takers }) => {
      const id = Number(insertMessage.run(stream, event, json, now).lastInsertRowid);
      insertDeliveries.run(id, now, stream);
      for (const taker of takers) leaseToTaker.run(now + taker.ackWaitMs, taker.durable, id);
      return id;
    }),
  );
  // BEGIN IMMEDIATE: the write lock from the start, or SQLITE_BUSY at once (retryWhileLocked).
  return (entries, now) => store.immediate(entries, now);
}

/** The deliveries of a durable that a claim may take now: pending, their time come, and no lease running. */
function dueDeliveries(db: Kysely<BusTables>, durable: string, now: number) {
  return db
    .selectFrom('deliveries')
    .select('message_id')
    .where('durable', '=', durable)
    .where('state', '=', 'pending')
    .where('available_at', '<=', now)
    .where('lease_until', '<=', now);
}

/**
 * One subscription's loop: keeps up to `concurrency` handlers busy, claiming more when woken
 * (by a publish in this process, a finished handler, or the poll timer).
 */
class Dispatcher {
  /** Handlers running: at most consumer.concurrency. */
  private readonly inFlight = new Set<Promise<void>>();
  /** Acks and nacks of handled messages not yet stored. */
  private readonly settling = new Set<Promise<void>>();
  private poller: NodeJS.Timeout | undefined;
  private pumping: Promise<void> | undefined;
  private pumpAgain = false;
  private halted = false;
  /**
   * Whether a claim could find anything: false after a claim that got fewer deliveries than it
   * asked for, until the next publish, poll or nack. A finished handler claims again only then;
   * otherwise every ack was followed by a claim that found nothing (2.4 claims per message with
   * one upload at a time, each a write transaction).
   */
  private maybeMore = true;
  /** Slots promised to messages being published in this process (see reserve()). */
  private reserved = 0;

  constructor(
    private readonly consumer: ConsumerSettings,
    private readonly handler: MessageHandler,
    private readonly pollIntervalMs: number,
    private readonly port: DispatchPort,
  ) {}

  get stream(): StreamName {
    return this.consumer.stream;
  }

  get durable(): string {
    return this.consumer.durable;
  }

  get ackWaitMs(): number {
    return this.consumer.ackWaitMs;
  }

  /**
   * Promises a slot to a message about to be published in this process, if this dispatcher is
   * idle enough: not claiming, nothing left to claim as far as it knows (so the message does not
   * overtake older ones), and a free slot. deliver() or release() settles the promise.
   */
  reserve(): boolean {
    if (this.halted || this.pumping || this.maybeMore || this.inFlight.size + this.reserved >= this.consumer.concurrency) return false;
    this.reserved++;
    return true;
  }

  release(): void {
    this.reserved--;
  }

  /** Runs a message whose delivery was stored already claimed by this dispatcher. */
  deliver(message: BusMessage): void {
    this.reserved--;
    this.run(message);
  }

  start(): void {
    this.poller = setInterval(() => this.wake(), this.pollIntervalMs);
    this.poller.unref();
    this.wake();
  }

  wake(): void {
    if (this.halted) return;
    this.maybeMore = true;
    if (this.pumping) {
      // A claim is running and may have missed what woke us: claim once more after it.
      this.pumpAgain = true;
      return;
    }
    this.pumping = this.pump()
      .catch((error: unknown) => this.port.onError(error))
      .finally(() => {
        this.pumping = undefined;
        if (this.pumpAgain) {
          this.pumpAgain = false;
          this.wake();
        }
      });
  }

  /** Stops claiming; handlers in flight keep running. */
  async halt(): Promise<void> {
    this.halted = true;
    clearInterval(this.poller);
    await this.pumping;
  }

  async stop(): Promise<void> {
    await this.halt();
    await Promise.all(this.inFlight);
    await Promise.all(this.settling);
  }

  private async pump(): Promise<void> {
    while (!this.halted) {
      const free = this.consumer.concurrency - this.inFlight.size - this.reserved;
      if (free <= 0) return;
      const messages = await this.port.claim(free);
      // Claimed deliveries are run even if halt() came meanwhile: they are leased to us now.
      for (const message of messages) this.run(message);
      if (messages.length < free) {
        this.maybeMore = false;
        return;
      }
    }
  }

  /**
   * Runs a message's handler in a slot; the slot frees as soon as the handler is done, and the
   * ack (or nack) follows outside it: waiting for an ack's commit is no handling.
   */
  private run(message: BusMessage): void {
    const handled = this.handle(message);
    const slot: Promise<void> = handled.then(() => {
      this.inFlight.delete(slot);
      if (this.maybeMore) this.wake();
    });
    this.inFlight.add(slot);
    const settled: Promise<void> = handled
      .then((failure) => this.settle(message, failure))
      .then(() => {
        this.settling.delete(settled);
        if (this.maybeMore) this.wake();
      });
    this.settling.add(settled);
  }

  /** Runs the handler; resolves with its failure, if it threw. */
  private async handle(message: BusMessage): Promise<{ error: unknown } | undefined> {
    const renewer = this.consumer.renewLease
      ? setInterval(() => this.port.renew(message).catch((error: unknown) => this.port.onError(error)), this.consumer.ackWaitMs / 3)
      : undefined;
    try {
      await this.handler(message);
      return undefined;
    } catch (error) {
      return { error };
    } finally {
      clearInterval(renewer);
    }
  }

  /**
   * Acks or nacks a handled message. Only after the handler returned: a crash before this leaves
   * the lease to expire and the message to be delivered again.
   */
  private async settle(message: BusMessage, failure: { error: unknown } | undefined): Promise<void> {
    try {
      if (failure) {
        await this.port.nack(message, failure.error);
        // Redelivery may be due at once (a zero backoff).
        this.maybeMore = true;
      } else {
        await this.port.ack(message);
      }
    } catch (error) {
      this.port.onError(error);
    }
  }
}

/**
 * Runs `work` (a statement or a whole transaction), running it again while another connection
 * holds the write lock, for up to LOCK_WAIT_MS. A failed attempt has been rolled back, so
 * running it again is safe.
 */
async function retryWhileLocked<T>(work: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (let delayMs = 1; ; delayMs = Math.min(delayMs * 2, 50)) {
    try {
      return await work();
    } catch (error) {
      if (!isLocked(error) || Date.now() >= deadline) throw error;
    }
    await sleep(delayMs);
  }
}

function isLocked(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY');
}

async function createTables(db: Kysely<BusTables>): Promise<void> {
  await db.schema
    .createTable('messages')
    .ifNotExists()
    .addColumn('id', 'integer', (col) => col.primaryKey().autoIncrement())
    .addColumn('stream', 'text', (col) => col.notNull())
    .addColumn('event', 'text', (col) => col.notNull())
    .addColumn('payload', 'text', (col) => col.notNull())
    .addColumn('published_at', 'integer', (col) => col.notNull())
    .execute();
  await db.schema.createIndex('messages_published_at').ifNotExists().on('messages').column('published_at').execute();
  await db.schema
    .createTable('consumers')
    .ifNotExists()
    .addColumn('durable', 'text', (col) => col.primaryKey())
    .addColumn('stream', 'text', (col) => col.notNull())
    .addColumn('created_at', 'integer', (col) => col.notNull())
    .execute();
  await db.schema
    .createTable('deliveries')
    .ifNotExists()
    .addColumn('durable', 'text', (col) => col.notNull())
    .addColumn('message_id', 'integer', (col) => col.notNull())
    .addColumn('attempts', 'integer', (col) => col.notNull().defaultTo(0))
    .addColumn('available_at', 'integer', (col) => col.notNull())
    .addColumn('lease_until', 'integer', (col) => col.notNull().defaultTo(0))
    .addColumn('state', 'text', (col) => col.notNull().defaultTo('pending'))
    .addColumn('last_error', 'text')
    .addPrimaryKeyConstraint('deliveries_pk', ['durable', 'message_id'])
    .execute();
  await db.schema.createIndex('deliveries_due').ifNotExists().on('deliveries').columns(['durable', 'state', 'available_at']).execute();
  // For pruning, which asks whether any delivery still refers to a message.
  await db.schema.createIndex('deliveries_message_id').ifNotExists().on('deliveries').column('message_id').execute();
}

function toMessage(row: { id: number; event: string; payload: string; published_at: number; attempts: number }): BusMessage {
  return {
    id: String(row.id),
    // Stored by publish() from a typed EventName and its payload.
    event: row.event as EventName,
    payload: JSON.parse(row.payload) as EventPayloads[EventName],
    attempt: row.attempts,
    publishedAt: new Date(row.published_at),
  };
}
