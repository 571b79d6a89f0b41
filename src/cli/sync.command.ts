import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { EXIT } from './exit-codes.js';
import { action, formatBytes, printResult } from './io.js';
import { withApi } from './session.js';

export function registerSyncCommand(program: Command): void {
  program
    .command('sync <dir>')
    .description('two-way sync of a local folder with a remote folder; the daemon state lives in <dir>/.photovault')
    .option('--remote <dir>', 'remote folder (default: the root)', '')
    .option('--once', 'converge once and exit')
    .option('--json', 'print a summary as JSON: uploaded, downloaded, deleted, conflicts, bytesSent, bytesReceived, failed')
    .action(
      action(async (dir: string, options: { remote: string; once?: boolean; json?: boolean }) => {
        if (!options.once) {
          process.stderr.write('photovault: continuous sync is not available yet; run with --once (from a timer for now).\n');
          return EXIT.usage;
        }
        const root = resolve(dir);
        const [{ LocalIndex }, { SyncEngine }, { normalizePath }] = await Promise.all([
          import('../daemon/local-index.js'),
          import('../daemon/sync-engine.js'),
          import('../core/paths.js'),
        ]);
        const remoteDir = normalizePath(options.remote, { allowRoot: true });
        const index = await LocalIndex.open(join(root, '.photovault', 'index.db'));
        try {
          const summary = await withApi((api) =>
            new SyncEngine(api, root, remoteDir, index, join(root, '.photovault', 'state.json')).syncOnce(),
          );
          for (const failure of summary.failed) process.stderr.write(`photovault: ${failure.path}: ${failure.message}\n`);
          printResult(
            options.json,
            summary,
            () =>
              `uploaded ${summary.uploaded}, downloaded ${summary.downloaded}, deleted ${summary.deleted}, conflicts ${summary.conflicts}; ` +
              `sent ${formatBytes(summary.bytesSent)}, received ${formatBytes(summary.bytesReceived)}`,
          );
          return summary.failed.length > 0 ? EXIT.partial : EXIT.ok;
        } finally {
          await index.close();
        }
      }),
    );
}
