import { randomBytes } from 'node:crypto';
import { JetStreamApiError, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { describe } from 'vitest';
import { STREAMS } from '../../src/infra/bus/event-bus.js';
import { DEAD_LETTERS, jetStreamName } from '../../src/infra/bus/nats.event-bus.js';

/**
 * The machine's NATS with JetStream (PHOTOVAULT_TEST_NATS_URL, default nats://127.0.0.1:4222),
 * for the suites of the NATS adapters. Outside CI a missing NATS skips them with a message; in CI
 * (CI=true) it fails.
 */
export const NATS_URL = process.env.PHOTOVAULT_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

async function jetStreamReachable(): Promise<boolean> {
  try {
    const nc = await connect({ servers: NATS_URL, timeout: 2_000 });
    try {
      await jetstreamManager(nc);
      return true;
    } finally {
      await nc.close();
    }
  } catch {
    return false;
  }
}

const natsAvailable = await jetStreamReachable();
if (!natsAvailable && process.env.CI) {
  throw new Error(`NATS with JetStream is not reachable at ${NATS_URL}; CI must run the NATS suites (start nats-server -js).`);
}

/** Defines the suite when NATS is reachable; otherwise skips it (and says so), only outside CI. */
export function describeWithNats(name: string, suite: () => void): void {
  if (natsAvailable) describe(name, suite);
  else describe.skip(`${name} (skipped: NATS with JetStream not reachable at ${NATS_URL}, and not in CI)`, suite);
}

/** A subject prefix of its own, so that runs sharing the server never meet. */
export function testPrefix(): string {
  return `pvtest-${randomBytes(6).toString('hex')}`;
}

/** Deletes the streams of `prefix`, and with them their consumers. */
export async function deleteStreams(prefix: string): Promise<void> {
  const nc = await connect({ servers: NATS_URL });
  try {
    const jsm = await jetstreamManager(nc);
    for (const stream of [...STREAMS, DEAD_LETTERS] as const) {
      await jsm.streams.delete(jetStreamName(prefix, stream)).catch((error: unknown) => {
        // Never created: the test failed before its bus opened.
        if (!(error instanceof JetStreamApiError && error.code === 10059)) throw error;
      });
    }
  } finally {
    await nc.close();
  }
}
