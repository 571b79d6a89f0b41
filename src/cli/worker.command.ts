import type { Command } from 'commander';
import { PvError } from '../core/errors.js';
import { JOB_KINDS, type JobKind } from '../core/media.js';
import { action, stopSignal } from './io.js';
import { configFromFlags, serverDataOptions } from './server.command.js';

export function registerWorkerCommands(program: Command): void {
  const worker = program.command('worker').description('run processing workers apart from the server');

  serverDataOptions(
    worker
      .command('start')
      .description('run processing jobs (thumbnails, metadata, video transcoding) from the same data or cluster the server uses'),
  )
    .option('--only <jobs>', `comma-separated job kinds to run (${JOB_KINDS.join(', ')}); default all`)
    .option('--port <port>', 'port of /healthz and /metrics; 0 picks a free one (default 8421)')
    .action(
      action(async (options: { data?: string; config?: string; only?: string; port?: string }) => {
        const only = parseJobKinds(options.only);
        const config = await configFromFlags(options, options.port !== undefined ? { processing: { port: options.port } } : {});
        const { createContext, workerCatalog } = await import('../server/context.js');
        const { startWorkers } = await import('../workers/workers.js');
        const { JobMetrics } = await import('../workers/job-metrics.js');
        const { serveWorkerEndpoint } = await import('../workers/worker-endpoint.js');
        const { collectDefaultMetrics, Registry } = await import('prom-client');
        const context = await createContext(config);
        const log = jsonLog(config.log.level);
        const registry = new Registry();
        collectDefaultMetrics({ register: registry, prefix: 'photovault_' });
        const endpoint = await serveWorkerEndpoint(config.server.host, config.processing.port, registry).catch(async (error: unknown) => {
          await context.close();
          throw error;
        });
        const ports = { bus: context.bus, blobs: context.blobs, catalog: workerCatalog(context), log, metrics: new JobMetrics(registry) };
        const workers = await startWorkers(ports, config, only);
        log.info({ jobs: only, dataDir: config.dataDir, pid: process.pid, url: endpoint.url }, 'photovault worker started');
        await stopSignal();
        log.info({}, 'shutting down');
        await workers.stop();
        await endpoint.close();
        await context.close();
      }),
    );
}

function parseJobKinds(list: string | undefined): JobKind[] {
  if (list === undefined) return [...JOB_KINDS];
  const kinds = list
    .split(',')
    .map((kind) => kind.trim())
    .filter(Boolean);
  const unknown = kinds.filter((kind) => !(JOB_KINDS as readonly string[]).includes(kind));
  if (unknown.length > 0 || kinds.length === 0) {
    throw new PvError('PV_INVALID_INPUT', `Unknown job kind ${unknown.join(', ') || '(none given)'}.`, {
      fix: `Name some of ${JOB_KINDS.join(', ')}, e.g. --only thumbnails,metadata.`,
    });
  }
  return [...new Set(kinds)] as JobKind[];
}

/** One JSON object per line on stdout, like the server's log, for journald or a log shipper. */
function jsonLog(level: string) {
  const write = (name: string) => (fields: object, msg: string) => {
    const { err, ...rest } = fields as { err?: unknown };
    const error = err instanceof Error ? { err: { message: err.message, stack: err.stack } } : {};
    process.stdout.write(`${JSON.stringify({ level: name, time: Date.now(), pid: process.pid, msg, ...rest, ...error })}\n`);
  };
  const quiet = level === 'silent' || level === 'fatal';
  return { info: quiet || level === 'error' || level === 'warn' ? () => {} : write('info'), error: quiet ? () => {} : write('error') };
}
