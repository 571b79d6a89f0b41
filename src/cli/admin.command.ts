import type { Command } from 'commander';
import type { TieringReport } from '../workers/tiering/tiering.job.js';
import { EXIT } from './exit-codes.js';
import { action, formatBytes, printResult } from './io.js';
import { configFromFlags, serverDataOptions, withStorageAdministration } from './server.command.js';

export function registerAdminCommands(program: Command): void {
  const admin = program.command('admin').description("maintain the server's storage (works on the data dir, also while the server runs)");

  serverDataOptions(
    admin
      .command('tier')
      .description(
        'move objects to colder storage tiers as they age (uploads -> photos-warm -> photos-cold), as the server does periodically',
      ),
  )
    .option('--dry-run', 'only report what would move')
    .option('--json', 'print the result as JSON')
    .action(
      action(async (options: { data?: string; config?: string; dryRun?: boolean; json?: boolean }) => {
        const config = await configFromFlags(options);
        const report = await withStorageAdministration(config, (storage) => storage.tiering.run({ dryRun: options.dryRun }));
        printResult(options.json, report, () => describeTiering(report));
        if (!report.ran) return EXIT.conflict;
        return report.failures.length > 0 ? EXIT.partial : EXIT.ok;
      }),
    );
}

function describeTiering(report: TieringReport): string {
  if (!report.ran) return 'another tiering run is in progress (in this or another process); nothing was done';
  const verb = report.dryRun ? 'would move' : 'moved';
  const lines = report.transitions.map(
    (t) => `${t.from} -> ${t.to}: ${verb} ${t.objects} object${t.objects === 1 ? '' : 's'}, ${formatBytes(t.bytes)}`,
  );
  if (report.recovered > 0) lines.push(`${report.dryRun ? 'would finish' : 'finished'} ${report.recovered} interrupted move(s)`);
  for (const failure of report.failures) {
    const move = failure.from === null ? 'finishing an interrupted move' : `${failure.from} -> ${failure.to}`;
    lines.push(`failed: ${failure.contentHash} (${move}): ${failure.error}${failure.leftForNextRun ? '; the next run finishes it' : ''}`);
  }
  return lines.join('\n');
}
