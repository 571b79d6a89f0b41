import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { EXIT } from './exit-codes.js';
import { action, formatBytes, printResult } from './io.js';
import type { Credentials } from '../daemon/credentials.js';
import type { SyncEngine, SyncSummary } from '../daemon/sync-engine.js';
import { withApi } from './session.js';

export function registerSyncCommands(program: Command): void {
  program
    .command('sync <dir>')
    .description('two-way sync of a local folder with a remote folder; the daemon state lives in <dir>/.photovault')
    .option('--remote <dir>', 'remote folder (default: the root)', '')
    .option('--once', 'converge once and exit (otherwise keep watching until interrupted)')
    .option(
      '--json',
      'print summaries as JSON: uploaded, downloaded, deleted, moved, conflicts, bytesSent, bytesReceived, deferred, failed',
    )
    .action(
      action(async (dir: string, options: { remote: string; once?: boolean; json?: boolean }) =>
        withEngine(dir, options.remote, async (engine, credentials) => {
          if (options.once) return report(await engine.converge(() => engine.syncOnce()), options.json);
          const [{ SyncDaemon }, { ControlSocket }, { clientRuntimeDir }] = await Promise.all([
            import('../daemon/sync-daemon.js'),
            import('../daemon/control-socket.js'),
            import('../core/client-config.js'),
          ]);
          const daemon = new SyncDaemon(engine, resolve(dir), {
            server: credentials.server,
            token: credentials.token,
            remote: options.remote,
            onPass: (summary) => {
              if (summary.uploaded + summary.downloaded + summary.deleted + summary.failed.length > 0) report(summary, options.json);
            },
            onError: (error) => process.stderr.write(`photovault: sync: ${(error as Error).message}\n`),
          });
          await daemon.start();
          const control = await ControlSocket.listen(clientRuntimeDir(), resolve(dir), () => daemon.status());
          await new Promise<void>((stop) => {
            process.once('SIGINT', stop);
            process.once('SIGTERM', stop);
          });
          await control.close();
          await daemon.stop();
          return EXIT.ok;
        }),
      ),
    );

  program
    .command('backup <dir>')
    .description(
      'one-way backup of a folder for cron: uploads what changed, never deletes on the server; quiet, non-zero exit on any failure',
    )
    .option('--remote <dir>', 'remote folder (default: the root)', '')
    .option('--json', 'print a summary as JSON')
    .action(
      action(async (dir: string, options: { remote: string; json?: boolean }) =>
        withEngine(dir, options.remote, async (engine) => {
          const summary = await engine.converge(() => engine.backupOnce());
          for (const failure of summary.failed) process.stderr.write(`photovault: ${failure.path}: ${failure.message}\n`);
          if (options.json) printResult(true, summary, () => '');
          return summary.failed.length > 0 ? EXIT.partial : EXIT.ok;
        }),
      ),
    );
}

/** The engine over a folder's index, for the command's work; the index is closed after. */
async function withEngine<T>(dir: string, remote: string, work: (engine: SyncEngine, credentials: Credentials) => Promise<T>): Promise<T> {
  const root = resolve(dir);
  const [{ LocalIndex }, { SyncEngine }, { normalizePath }, { keepYoungGenerationSmall }] = await Promise.all([
    import('../daemon/local-index.js'),
    import('../daemon/sync-engine.js'),
    import('../core/paths.js'),
    import('../daemon/heap.js'),
  ]);
  keepYoungGenerationSmall();
  const remoteDir = normalizePath(remote, { allowRoot: true });
  const index = await LocalIndex.open(join(root, '.photovault', 'index.db'));
  try {
    return await withApi((api, credentials) =>
      work(new SyncEngine(api, root, remoteDir, index, join(root, '.photovault', 'state.json')), credentials),
    );
  } finally {
    await index.close();
  }
}

function report(summary: SyncSummary, json: boolean | undefined): number {
  for (const failure of summary.failed) process.stderr.write(`photovault: ${failure.path}: ${failure.message}\n`);
  printResult(
    json,
    summary,
    () =>
      `uploaded ${summary.uploaded}, downloaded ${summary.downloaded}, deleted ${summary.deleted}, moved ${summary.moved}, ` +
      `conflicts ${summary.conflicts}; ` +
      `sent ${formatBytes(summary.bytesSent)}, received ${formatBytes(summary.bytesReceived)}`,
  );
  return summary.failed.length > 0 ? EXIT.partial : EXIT.ok;
}
