/**
 * Runs work over items with at most `limit` in flight; the first failure stops new work and is
 * thrown once the rest settle. Items may come from an async source (a Feed) that is still
 * filling: the lanes take each as it comes.
 */
export async function runPool<T>(items: Iterable<T> | AsyncIterable<T>, limit: number, work: (item: T) => Promise<void>): Promise<void> {
  const lanes = Array.isArray(items) ? Math.min(limit, items.length) : limit;
  const source = Symbol.asyncIterator in items ? items[Symbol.asyncIterator]() : items[Symbol.iterator]();
  let failure: unknown = null;
  const lane = async () => {
    while (failure === null) {
      const next = await source.next();
      if (next.done) return;
      try {
        await work(next.value);
      } catch (error) {
        failure ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  if (failure !== null) throw failure;
}

/** Items in groups of `size` (the last one smaller), a group as soon as it is full. */
export async function* inGroups<T>(items: Iterable<T> | AsyncIterable<T>, size: number): AsyncGenerator<T[]> {
  let group: T[] = [];
  for await (const item of items) {
    group.push(item);
    if (group.length < size) continue;
    yield group;
    group = [];
  }
  if (group.length > 0) yield group;
}

/**
 * Items in order, in groups of at most maxItems items and maxBytes bytes (sizeOf each); an item
 * larger than maxBytes makes a group of its own. How many chunks or files go to one request.
 */
export function inSizedGroups<T>(items: T[], sizeOf: (item: T) => number, limits: { maxItems: number; maxBytes: number }): T[][] {
  const groups: T[][] = [];
  let bytes = 0;
  for (const item of items) {
    const group = groups.at(-1);
    if (group && group.length < limits.maxItems && bytes + sizeOf(item) <= limits.maxBytes) {
      group.push(item);
      bytes += sizeOf(item);
    } else {
      groups.push([item]);
      bytes = sizeOf(item);
    }
  }
  return groups;
}

/**
 * Items handed from a producer to a consumer that iterates them as they come, until end(): how
 * a scan gives files to the uploads while it goes on. One consumer.
 */
export class Feed<T> implements AsyncIterable<T> {
  private readonly queued: T[] = [];
  private ended = false;
  private wake: (() => void) | null = null;

  push(item: T): void {
    this.queued.push(item);
    this.wake?.();
  }

  /** No more items: the iteration ends once the queued ones are taken. */
  end(): void {
    this.ended = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for (;;) {
      if (this.queued.length > 0) {
        yield this.queued.shift()!;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = null;
    }
  }
}
