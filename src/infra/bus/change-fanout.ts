/**
 * Fan-out of "user U's change feed moved on to SEQ" to every server process, so that a change
 * committed through one process reaches the WebSocket clients connected to another (DESIGN
 * section 4). Implemented by both EventBus adapters, over the same connection: the embedded bus
 * with an in-process EventEmitter (one process holds every client), the NATS bus with a core
 * NATS subject.
 *
 * Unlike the EventBus, nothing is kept: a process that is listening when a change is announced
 * gets it once; one that is not (starting, disconnected) never will. That is enough because the
 * change feed is the record: a device reads `changes?since=` its cursor when it connects, and an
 * announcement only wakes it sooner. Announcements from different processes may arrive out of
 * order, so a listener treats `seq` as "at least".
 */

export interface FeedAdvanced {
  userId: string;
  /** The feed's sequence number after the change. */
  seq: number;
}

export type FeedListener = (change: FeedAdvanced) => void;

export interface ChangeFanout {
  /** Tells every process listening now, this one included. Resolves once sent, not once received. */
  announce(change: FeedAdvanced): Promise<void>;
  /** Calls listener for every announcement from any process; resolves once it is listening, with the function that stops it. */
  listen(listener: FeedListener): Promise<() => void>;
}
