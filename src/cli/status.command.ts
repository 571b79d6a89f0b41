import type { Command } from 'commander';
import { action, formatBytes, printResult } from './io.js';

export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description('what each running sync daemon is doing: a live dashboard on a terminal, plain text or JSON otherwise')
    .option('--json', 'print the statuses as JSON')
    .action(
      action(async (options: { json?: boolean }) => {
        const [{ clientRuntimeDir }, { readStatuses }] = await Promise.all([
          import('../core/client-config.js'),
          import('../daemon/control-socket.js'),
        ]);
        const runtimeDir = clientRuntimeDir();
        if (!options.json && process.stdout.isTTY && process.stdin.isTTY) {
          const { showLiveStatus } = await import('../tui/live-status.js');
          await showLiveStatus(runtimeDir);
          return;
        }
        const statuses = await readStatuses(runtimeDir);
        printResult(options.json, statuses, () =>
          statuses.length === 0
            ? 'no sync daemon is running'
            : statuses
                .map(
                  (s) =>
                    `${s.folder} -> /${s.remote}: ${s.connected ? 'connected' : 'offline'}, ${s.state}, ` +
                    `uploaded ${s.totals.uploaded}, downloaded ${s.totals.downloaded}, deleted ${s.totals.deleted}, conflicts ${s.totals.conflicts}, ` +
                    `sent ${formatBytes(s.totals.bytesSent)}, received ${formatBytes(s.totals.bytesReceived)}`,
                )
                .join('\n'),
        );
      }),
    );
}
