import type { Command } from 'commander';
import { EXIT } from './exit-codes.js';
import { action, formatBytes, printResult } from './io.js';
import { ProgressBar } from './progress-bar.js';
import { withApi } from './session.js';

export function registerUploadCommand(program: Command): void {
  program
    .command('upload <paths...>')
    .description('upload files and folders; only chunks the server lacks are sent, and an interrupted upload resumes when run again')
    .option('--to <dir>', 'remote folder to upload into (default: the root)', '')
    .option('--json', 'print a summary as JSON: files, bytesTotal, bytesSent, bytesDeduplicated, failed')
    .action(
      action(async (paths: string[], options: { to: string; json?: boolean }) => {
        const { Uploader } = await import('../daemon/uploader.js');
        const bar = new ProgressBar();
        const summary = await withApi((api) =>
          new Uploader(api, { onProgress: (p) => bar.update(p.bytesDone, p.bytesTotal, `${p.filesDone}/${p.filesTotal} files`) }).upload(
            paths,
            options.to,
          ),
        );
        bar.finish();
        for (const failure of summary.failed) process.stderr.write(`photovault: ${failure.path}: ${failure.message}\n`);
        printResult(
          options.json,
          summary,
          () =>
            `uploaded ${summary.files} file(s), ${formatBytes(summary.bytesTotal)}: sent ${formatBytes(summary.bytesSent)}, ${formatBytes(summary.bytesDeduplicated)} already on the server`,
        );
        return summary.failed.length > 0 ? EXIT.partial : EXIT.ok;
      }),
    );
}
