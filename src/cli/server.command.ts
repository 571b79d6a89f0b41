import type { Command } from 'commander';
import { API_SERVICES } from '../core/api-services.js';
import type { ServerConfig } from '../core/config.js';
import type { StorageAdministration } from '../server/context.js';
import type { VerifyReport } from '../server/storage/integrity.service.js';
import { EXIT } from './exit-codes.js';
import { action, formatBytes, printResult, stopSignal } from './io.js';

/** Flags every command that opens the server's data accepts. */
export function serverDataOptions(command: Command): Command {
  return command
    .option('--data <dir>', 'data directory (default: /var/lib/photovault as root, else ~/.local/share/photovault)')
    .option('--config <file>', 'config file (default: <data>/config.json when present)');
}

/** Config from --data/--config plus whatever flags the command maps onto schema keys. */
export async function configFromFlags(options: { data?: string; config?: string }, flags: Record<string, unknown> = {}) {
  const { loadServerConfig } = await import('../core/config.js');
  return loadServerConfig({ configFile: options.config, flags: { ...(options.data ? { dataDir: options.data } : {}), ...flags } });
}

/** Runs work on the configured metadata and blobs (no bus, no services), then closes them. */
export async function withStorageAdministration<T>(config: ServerConfig, work: (storage: StorageAdministration) => Promise<T>): Promise<T> {
  const { openStorageAdministration } = await import('../server/context.js');
  const storage = await openStorageAdministration(config);
  try {
    return await work(storage);
  } finally {
    await storage.close();
  }
}

export function registerServerCommands(program: Command): void {
  const server = program.command('server').description('run and administer the photovault server');

  serverDataOptions(
    server.command('start').description('start the server with every service, on the embedded default unless configured otherwise'),
  )
    .option('--host <host>', 'address to listen on (default 0.0.0.0)')
    .option('--port <port>', 'port to listen on; 0 picks a free one (default 8420)')
    .option('--services <list>', `comma-separated API services to serve (${API_SERVICES.join(', ')}); default all`)
    .action(
      action(async (options: { data?: string; config?: string; host?: string; port?: string; services?: string }) => {
        const serverFlags = {
          ...(options.host ? { host: options.host } : {}),
          ...(options.port !== undefined ? { port: options.port } : {}),
          ...(options.services !== undefined ? { services: options.services } : {}),
        };
        const config = await configFromFlags(options, Object.keys(serverFlags).length ? { server: serverFlags } : {});
        const { startServer } = await import('../server/server.js');
        const running = await startServer(config);
        running.app.log.info(
          {
            url: running.url,
            dataDir: config.dataDir,
            database: config.database.url ? 'postgresql' : 'sqlite',
            services: config.server.services,
          },
          'photovault server started',
        );
        await stopSignal();
        running.app.log.info('shutting down');
        await running.close();
      }),
    );

  serverDataOptions(
    server
      .command('verify')
      .description(
        're-read every stored object and check its hash; report missing objects and blobs nothing records (also while the server runs)',
      ),
  )
    .option('--json', 'print the result as JSON')
    .action(
      action(async (options: { data?: string; config?: string; json?: boolean }) => {
        const report = await withStorageAdministration(await configFromFlags(options), (storage) => storage.integrity.verify());
        printResult(options.json, report, () => describeVerify(report));
        return report.ok ? EXIT.ok : EXIT.integrity;
      }),
    );
}

function describeVerify(report: VerifyReport): string {
  const lines = [`checked ${report.checked.objects} objects, ${formatBytes(report.checked.bytes)}`];
  for (const m of report.mismatched) {
    const read = m.error ?? `read ${m.actualSize} bytes with SHA-256 ${m.actualSha256}, expected ${m.expectedSize} bytes`;
    lines.push(`mismatch: ${m.bucket}: ${m.contentHash}: ${read}`);
  }
  for (const m of report.missing) lines.push(`missing: ${m.bucket}: ${m.contentHash} (recorded there, not found)`);
  for (const o of report.orphans) lines.push(`orphan: ${o.bucket}: ${o.key} (${formatBytes(o.size)}, recorded nowhere)`);
  const { counts } = report;
  if (counts.derivedWithoutContent > 0) {
    lines.push(`${counts.derivedWithoutContent} derived file(s) of content no longer stored (left by trash purges; not an error)`);
  }
  if (counts.unfinishedMoves > 0)
    lines.push(`${counts.unfinishedMoves} tiering move(s) under way or interrupted (the next run finishes them)`);
  const listed = report.mismatched.length + report.missing.length + report.orphans.length;
  const problems = counts.mismatched + counts.missing + counts.orphans;
  if (problems > listed) lines.push(`(${problems - listed} more not listed; see --json counts)`);
  lines.push(
    report.ok ? 'OK' : `${problems} problem(s): ${counts.mismatched} mismatched, ${counts.missing} missing, ${counts.orphans} orphaned`,
  );
  return lines.join('\n');
}
