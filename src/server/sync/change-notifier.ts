/**
 * Tells whoever listens that a user's change feed has moved on. Services call changed() after
 * the transaction that appended the changes has committed; the sync hub pushes it to the user's
 * devices. In-process: one server process sees its own commits (the cluster form fans out
 * through the bus).
 */
export class ChangeNotifier {
  private readonly listeners = new Map<string, Set<() => void>>();

  changed(userId: string): void {
    for (const listener of this.listeners.get(userId) ?? []) listener();
  }

  /** Calls listener after each change of the user's feed; returns the unsubscribe function. */
  subscribe(userId: string, listener: () => void): () => void {
    let set = this.listeners.get(userId);
    if (!set) this.listeners.set(userId, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(userId);
    };
  }
}
