import { setFlagsFromString } from 'node:v8';

/**
 * Keeps V8's young generation at its starting size in a sync or backup process. A scan of
 * unchanged files allocates fast without giving the event loop back (its lstat is synchronous),
 * and V8 answered by growing the young generation: in about half the rescans of 100,000 files the
 * process held ~200 MiB instead of ~150. V8 reads this flag whenever it would grow the young
 * generation, so setting it at run time takes effect.
 */
export function keepYoungGenerationSmall(): void {
  setFlagsFromString('--semi-space-growth-factor=1');
}
