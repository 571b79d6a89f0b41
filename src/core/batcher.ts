/** What a batch run gives back for one item: its value, or the error it alone failed with. */
export type BatchOutcome<R> = { value: R } | { error: unknown };

/**
 * Group commit: items added while a batch runs wait and go together as the next batch, so a
 * burst of concurrent work shares one transaction (one flush) instead of taking one each. An item
 * added while nothing runs starts a batch at the end of the event loop's turn (setImmediate), with
 * whatever else the I/O of that turn added: work of concurrent requests lands in the same turn,
 * and a transaction over an in-process database (SQLite) runs within one turn, so without the
 * wait nothing would ever be batched.
 */
export class Batcher<T, R> {
  private queue: { item: T; resolve: (value: R) => void; reject: (error: unknown) => void }[] = [];
  private running = false;

  /**
   * run takes a batch (at most maxBatch items, in the order they were added) and gives one
   * outcome per item, in that order; if it throws, every item of the batch fails with that error.
   */
  constructor(
    private readonly run: (items: T[]) => Promise<BatchOutcome<R>[]>,
    private readonly maxBatch = 256,
  ) {}

  /** Adds an item to the next batch; settles as its outcome once that batch has run. */
  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (!this.running) {
        this.running = true;
        setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      let outcomes: BatchOutcome<R>[];
      try {
        outcomes = await this.run(batch.map((entry) => entry.item));
      } catch (error) {
        for (const entry of batch) entry.reject(error);
        continue;
      }
      for (const [at, entry] of batch.entries()) {
        const outcome = outcomes[at];
        if (outcome === undefined) entry.reject(new Error('A batch run gave no outcome for an item.'));
        else if ('error' in outcome) entry.reject(outcome.error);
        else entry.resolve(outcome.value);
      }
    }
    this.running = false;
  }
}
