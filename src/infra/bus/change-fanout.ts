/**
 * Fan-out of "user U's change feed moved on" and "user U's devices' presence changed" to every
 * server process, so that a change committed through one process, or a device connecting to one,
 * reaches the WebSocket clients connected to another (DESIGN section 4). Implemented by both
 * EventBus adapters, over the connection they hold: the embedded bus with an in-process
 * EventEmitter (one process holds every client), the NATS bus with a core NATS subject.
 *
 * Unlike the EventBus, nothing is kept: a process that is listening when something is announced
 * hears it once; one that is not (starting, disconnected) never will. That is enough because the
 * change feed and the presence keys are the record: a device reads `changes?since=` its cursor
 * when it connects, and an announcement only makes the listeners read again sooner. That is also
 * why announcements carry no sequence number: ones from different processes may arrive out of
 * order, and the feed itself says how far it is.
 */

export type Announcement =
  /** The user's change feed moved on (listeners read how far from the feed itself). */
  | { kind: 'feed'; userId: string }
  /** One of the user's devices connected, acknowledged its cursor or left. */
  | { kind: 'presence'; userId: string };

export type AnnouncementListener = (announcement: Announcement) => void;

/** The announcement in a message from another process, or null when it is not one. */
export function parseAnnouncement(value: unknown): Announcement | null {
  if (typeof value !== 'object' || value === null) return null;
  const { kind, userId } = value as Record<string, unknown>;
  return typeof userId === 'string' && (kind === 'feed' || kind === 'presence') ? { kind, userId } : null;
}

export interface ChangeFanout {
  /** Tells every process listening now, this one included. Resolves once sent, not once received. */
  announce(announcement: Announcement): Promise<void>;
  /** Calls listener for every announcement from any process; resolves once it is listening, with the function that stops it. */
  listen(listener: AnnouncementListener): Promise<() => void>;
}
