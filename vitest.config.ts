import { defineConfig } from 'vitest/config';
import { TIME_SCALE } from './test/support/time-scale.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.{ts,tsx}'],
    // The cluster run's shared S3 server (test/support/backends.ts).
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000 * TIME_SCALE,
    hookTimeout: 60_000 * TIME_SCALE,
    // Two cores: files run in parallel, but the end-to-end suites spawn servers of their own.
    maxWorkers: 2,
  },
});
