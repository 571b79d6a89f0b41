import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { isPvError } from '../../src/core/errors.js';
import { loadServerConfig, type ServerConfig } from '../../src/core/config.js';
import { buildApp } from '../../src/server/app.js';
import { createContext, type ServerContext } from '../../src/server/context.js';
import type { Principal } from '../../src/server/user/user.service.js';
import { CLUSTER_BACKENDS, createClusterBackends } from './backends.js';
import { createPostgresDatabase, type DatabaseKind } from './databases.js';

/** A test clock: starts at the real now and only moves when told. */
export class TestClock {
  value = Date.now();
  now = () => this.value;
  advance(ms: number) {
    this.value += ms;
  }
}

export interface TestServer {
  config: ServerConfig;
  context: ServerContext;
  app: FastifyInstance;
  clock: TestClock;
  /** Creates the user if new, logs in, and returns the bearer token and principal. */
  login(name: string, options?: { deviceName?: string }): Promise<{ token: string; principal: Principal; auth: { authorization: string } }>;
  close(): Promise<void>;
}

const PASSWORD = 'correct horse battery staple';

/** A whole server context (real adapters, temp data dir, fresh database; Redis, NATS and S3 in the cluster run) and its app for inject(). */
export async function createTestServer(kind: DatabaseKind, overrides: Record<string, unknown> = {}): Promise<TestServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'pv-server-'));
  let dropDatabase = async () => {};
  let database: Record<string, unknown> = {};
  if (kind === 'postgres') {
    const postgres = await createPostgresDatabase();
    database = { url: postgres.url, poolSize: 4 };
    dropDatabase = postgres.drop;
  }
  const cluster = CLUSTER_BACKENDS ? await createClusterBackends() : null;
  const config = loadServerConfig({ env: {}, flags: { dataDir, database, ...cluster?.config, ...overrides } });
  const clock = new TestClock();
  const context = await createContext(config, { now: clock.now });
  const app = await buildApp(context);
  return {
    config,
    context,
    app,
    clock,
    async login(name, options = {}) {
      await context.users.addUser(name, PASSWORD).catch((error: unknown) => {
        if (!isPvError(error, 'PV_USER_EXISTS')) throw error;
      });
      const result = await context.users.login({
        name,
        password: PASSWORD,
        deviceName: options.deviceName ?? `${name}-laptop`,
        clientAddress: '127.0.0.1',
      });
      const principal = await context.users.authenticate(result.token);
      return { token: result.token, principal, auth: { authorization: `Bearer ${result.token}` } };
    },
    async close() {
      await app.close();
      await context.close();
      await dropDatabase();
      await cluster?.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export { PASSWORD as TEST_PASSWORD };
