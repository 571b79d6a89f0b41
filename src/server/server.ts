import type { FastifyInstance } from 'fastify';
import type { ServerConfig } from '../core/config.js';
import { buildApp } from './app.js';
import { startWorkers } from '../workers/workers.js';
import { type ContextOptions, createContext, type ServerContext, workerCatalog } from './context.js';

export interface RunningServer {
  app: FastifyInstance;
  context: ServerContext;
  /** Base URL clients on this machine can reach. */
  url: string;
  close(): Promise<void>;
}

const SWEEP_INTERVAL_MS = 10 * 60 * 1000;

/** Builds the context and the app, listens, and runs the housekeeping timers of the embedded server. */
export async function startServer(config: ServerConfig, options: ContextOptions & { log?: boolean } = {}): Promise<RunningServer> {
  const context = await createContext(config, options);
  const app = await buildApp(context, { logger: options.log === false ? false : { level: config.log.level } });
  await app.listen({ host: config.server.host, port: config.server.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.server.port;
  const host = config.server.host === '0.0.0.0' || config.server.host === '::' ? '127.0.0.1' : config.server.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

  // Housekeeping: expire abandoned uploads and purge trash past its retention. A failure is
  // logged and retried at the next tick; it never takes the server down.
  const housekeeping = async () => {
    try {
      await context.uploads.sweep();
      await context.files.purgeExpiredTrash();
    } catch (error) {
      app.log.error({ err: error }, 'housekeeping failed');
    }
  };
  const timer = setInterval(housekeeping, SWEEP_INTERVAL_MS);
  timer.unref();
  void housekeeping();

  // The processing pipeline: the server turns uploads into jobs and records outcomes; the
  // workers run here too unless `photovault worker start` processes run them.
  const pipeline = await context.processing.start();
  const workers = config.processing.inProcess
    ? await startWorkers({ bus: context.bus, blobs: context.blobs, catalog: workerCatalog(context), log: app.log }, config)
    : null;

  return {
    app,
    context,
    url,
    async close() {
      clearInterval(timer);
      await workers?.stop();
      await Promise.all(pipeline.map((subscription) => subscription.stop()));
      await app.close();
      await context.close();
    },
  };
}
