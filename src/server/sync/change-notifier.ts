import type { Announcement, ChangeFanout } from '../../infra/bus/change-fanout.js';

export type UserSignal = Announcement['kind'];

/**
 * Tells whoever listens in this process that a user's change feed moved on or that the presence
 * of the user's devices changed, whichever server process it happened in. Services call changed()
 * after the transaction that appended the changes has committed; the sync hub calls
 * presenceChanged() and pushes both to the user's devices. Everything goes out through the
 * fan-out and comes back the same way, this process's own signals included: one path, so a
 * signal is never delivered twice.
 */
export class ChangeNotifier {
  private readonly listeners = new Map<string, Set<(signal: UserSignal) => void>>();
  private stopListening: (() => void) | null = null;

  constructor(
    private readonly fanout: ChangeFanout,
    private readonly onError: (error: unknown) => void,
  ) {}

  /** Starts hearing the fan-out; signals are only delivered from then on. */
  async start(): Promise<void> {
    this.stopListening ??= await this.fanout.listen((announcement) => {
      for (const listener of this.listeners.get(announcement.userId) ?? []) listener(announcement.kind);
    });
  }

  stop(): void {
    this.stopListening?.();
    this.stopListening = null;
  }

  changed(userId: string): void {
    this.announce({ kind: 'feed', userId });
  }

  presenceChanged(userId: string): void {
    this.announce({ kind: 'presence', userId });
  }

  /** Calls listener with each signal about the user; returns the unsubscribe function. */
  subscribe(userId: string, listener: (signal: UserSignal) => void): () => void {
    let set = this.listeners.get(userId);
    if (!set) this.listeners.set(userId, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(userId);
    };
  }

  /**
   * Fire and forget: the commit is already durable, and a lost signal only delays a device until
   * its next read. Once stopped (the server closing) there is nobody left to tell.
   */
  private announce(announcement: Announcement): void {
    this.fanout.announce(announcement).catch((error: unknown) => {
      if (this.stopListening) this.onError(error);
    });
  }
}
