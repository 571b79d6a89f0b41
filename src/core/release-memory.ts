import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let collect: ((options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void) | undefined;

/**
 * Gives the memory of a burst of work back to the system: a full collection of the kind V8 runs
 * when memory is short, which also returns its pooled pages. A burst (a daemon's walk of its
 * folder, a server taking in a first sync) leaves hundreds of MiB that V8's own memory reducer
 * never returns to an idle process: it waits for a quiet allocation rate, which it measures at
 * collections, and an idle process makes none. A daemon watching 100,000 files held ~360 MiB for
 * as long as it ran. A collection takes tens of ms.
 */
export function releaseMemory(): void {
  if (!collect) {
    // V8's gc function, without exposing it to the rest of the process: a context made while the
    // flag is set has it.
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as typeof collect;
    setFlagsFromString('--no-expose-gc');
  }
  collect!({ type: 'major', execution: 'sync', flavor: 'last-resort' });
}

/**
 * How long a process (a sync daemon without a pass, a server without a response) stays quiet
 * before it gives the memory of its last burst back: long enough not to collect amid a burst, where
 * the heap would only grow back.
 */
const RELEASE_AFTER_QUIET_MS = 10_000;

/** Releases memory (release) once, when quietMs have passed since the last touch(). */
export class QuietRelease {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly quietMs = RELEASE_AFTER_QUIET_MS,
    private readonly release: () => void = releaseMemory,
  ) {}

  /** Notes activity: the release waits for quietMs more. */
  touch(): void {
    if (this.timer) {
      this.timer.refresh();
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.release();
    }, this.quietMs);
    // A process with nothing else to do exits rather than wait for it.
    this.timer.unref();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
