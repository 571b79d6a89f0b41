import { once } from 'node:events';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { expect } from 'vitest';
import { isPvError, type PvError } from '../../src/core/errors.js';

/**
 * Stand-ins for a backend that cannot be reached (a port nobody listens on, a peer that never
 * answers), and the check that an adapter's open() then fails the way docs/configuration.md says.
 */

/** A loopback port nothing listens on (it was free a moment ago): connecting to it is refused. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/** A loopback server that accepts connections and never says a word: a hung backend. */
export async function startSilentServer(): Promise<{ port: number; close(): void }> {
  const accepted = new Set<Socket>();
  const server = createServer((socket) => accepted.add(socket.on('error', () => {})));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    close() {
      for (const socket of accepted) socket.destroy();
      server.close();
    },
  };
}

/** Checks that opening failed with PV_BACKEND_UNREACHABLE, its message naming `names`, within `withinMs`. */
export async function expectUnreachable(open: () => Promise<unknown>, options: { names: string; withinMs: number }): Promise<PvError> {
  const started = Date.now();
  const error = await open().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(Date.now() - started).toBeLessThan(options.withinMs);
  expect(isPvError(error, 'PV_BACKEND_UNREACHABLE'), String(error)).toBe(true);
  expect((error as PvError).message).toContain(options.names);
  return error as PvError;
}
