import type { FastifyInstance } from 'fastify';
import type { ServerConfig } from '../core/config.js';
import { QuietRelease } from '../core/release-memory.js';
import { buildApp } from './app.js';
import { JobMetrics } from '../workers/job-metrics.js';
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
const TIERING_FIRST_RUN_MS = 60 * 1000;

/** Builds the context and the app, listens, and runs the housekeeping timers of the embedded server. */
export async function startServer(config: ServerConfig, options: ContextOptions & { log?: boolean } = {}): Promise<RunningServer> {
  const context = await createContext(config, options);
  const app = await buildApp(context, { logger: options.log === false ? false : { level: config.log.level } });
  // A first sync puts hundreds of MiB through the server, and an idle server held on to most of
  // it (400-435 MiB after 2,000 files / 498 MiB in and out, against ~180 at start; ~270 with this).
  const quiet = new QuietRelease();
  // A callback hook, not an async one: no promise per response.
  app.addHook('onResponse', (_request, _reply, done) => {
    quiet.touch();
    done();
  });
  await app.listen({ host: config.server.host, port: config.server.port });
  quiet.touch(); // the start-up's garbage too
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

  // Storage tiering: a minute after start (a server restarted more often than the interval still
  // tiers), then every tiering.intervalHours. Its lease keeps it to one process at a time.
  const tieringStop = new AbortController();
  let tiering: Promise<void> | null = null;
  const tier = () => {
    tiering ??= context.tiering
      .run({ signal: tieringStop.signal })
      .then(
        (report) => {
          const moved = report.transitions.reduce((sum, t) => sum + t.objects, 0);
          if (moved > 0 || report.recovered > 0 || report.failures.length > 0) app.log.info({ tiering: report }, 'tiering run finished');
        },
        (error: unknown) => {
          if (!tieringStop.signal.aborted) app.log.error({ err: error }, 'tiering run failed');
        },
      )
      .finally(() => (tiering = null));
  };
  const tieringMs = config.tiering.intervalHours * 3_600_000;
  const tieringTimers = tieringMs > 0 ? [setTimeout(tier, TIERING_FIRST_RUN_MS), setInterval(tier, tieringMs)] : [];
  for (const timer of tieringTimers) timer.unref();

  // The processing pipeline: the server turns uploads into jobs and records outcomes; the
  // workers run here too unless `photovault worker start` processes run them.
  const pipeline = await context.processing.start();
  const workers = config.processing.inProcess
    ? await startWorkers(
        {
          bus: context.bus,
          blobs: context.blobs,
          catalog: workerCatalog(context),
          log: app.log,
          metrics: new JobMetrics(context.metrics.registry),
        },
        config,
      )
    : null;

  return {
    app,
    context,
    url,
    async close() {
      clearInterval(timer);
      for (const timer of tieringTimers) clearTimeout(timer);
      tieringStop.abort();
      await tiering;
      await workers?.stop();
      await Promise.all(pipeline.map((subscription) => subscription.stop()));
      await app.close();
      quiet.stop(); // after the last responses have touched it
      await context.close();
    },
  };
}
