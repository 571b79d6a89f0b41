import { basename, resolve } from 'node:path';
import type { Command } from 'commander';
import type { FileEntry } from '../core/protocol.js';
import { action, formatBytes, printResult } from './io.js';
import { withApi } from './session.js';

export function registerFilesCommands(program: Command): void {
  program
    .command('ls [dir]')
    .description('list a remote folder (default: the root)')
    .option('--json', 'print the entries as JSON')
    .action(
      action(async (dir: string | undefined, options: { json?: boolean }) => {
        const entries = await withApi(async (api) => {
          const all: FileEntry[] = [];
          let cursor: string | undefined;
          do {
            const page = await api.list(dir ?? '', cursor, 1000);
            all.push(...page.entries);
            cursor = page.nextCursor ?? undefined;
          } while (cursor);
          return all;
        });
        printResult(options.json, entries, () =>
          entries
            .map((e) =>
              e.kind === 'folder'
                ? `${e.name}/`
                : `${formatBytes(e.size).padStart(10)}  ${new Date(e.mtime).toISOString().slice(0, 19)}  ${e.name}`,
            )
            .join('\n'),
        );
      }),
    );

  program
    .command('get <path>')
    .description('download a file; it is verified against its content hash before it appears under its name')
    .option('--out <file>', 'local file to write (default: the file name in the current folder)')
    .option('--version <id>', 'download this version instead of the latest')
    .option('--json', 'print the result as JSON')
    .action(
      action(async (path: string, options: { out?: string; version?: string; json?: boolean }) => {
        const { downloadFile } = await import('../daemon/downloader.js');
        const out = resolve(options.out ?? basename(path));
        const result = await withApi((api) => downloadFile(api, path, out, { version: options.version }));
        printResult(options.json, { path, out, ...result }, () => `${path} -> ${out} (${formatBytes(result.bytes)})`);
      }),
    );

  program
    .command('versions <path>')
    .description('list the versions of a remote file, newest first')
    .option('--json', 'print the versions as JSON')
    .action(
      action(async (path: string, options: { json?: boolean }) => {
        const versions = await withApi((api) => api.versions(path));
        printResult(options.json, versions, () => versions.map((v) => `${v.id}  ${v.createdAt}  ${formatBytes(v.size)}`).join('\n'));
      }),
    );

  program
    .command('mv <from> <to>')
    .description('move or rename a remote file or folder; <to> must not exist')
    .option('--json', 'print the moved entry as JSON')
    .action(
      action(async (from: string, to: string, options: { json?: boolean }) => {
        const entry = await withApi((api) => api.move(from, to));
        printResult(options.json, entry, () => `${from} -> ${entry.path}`);
      }),
    );

  program
    .command('rm <path>')
    .description('move a remote file or folder to the trash')
    .option('--json', 'print the trash entry as JSON')
    .action(
      action(async (path: string, options: { json?: boolean }) => {
        const entry = await withApi((api) => api.remove(path));
        printResult(options.json, entry, () => `moved ${entry.path} to the trash (restore with: photovault trash restore ${entry.id})`);
      }),
    );

  const trash = program.command('trash').description('list, restore or empty the trash');
  trash
    .command('ls')
    .description('list the trash')
    .option('--json', 'print the entries as JSON')
    .action(
      action(async (options: { json?: boolean }) => {
        const entries = await withApi((api) => api.trash());
        printResult(
          options.json,
          entries,
          () =>
            entries.map((e) => `${e.id}  ${e.deletedAt}  ${e.kind === 'folder' ? `${e.path}/` : e.path}`).join('\n') || '(trash is empty)',
        );
      }),
    );
  trash
    .command('restore <id>')
    .description('restore a trash entry to where it was')
    .option('--json', 'print the entry as JSON')
    .action(
      action(async (id: string, options: { json?: boolean }) => {
        const entry = await withApi((api) => api.restore(id));
        printResult(options.json, entry, () => `restored ${entry.path}`);
      }),
    );
  trash
    .command('empty')
    .description('delete everything in the trash for good')
    .option('--json', 'print the result as JSON')
    .action(
      action(async (options: { json?: boolean }) => {
        const result = await withApi((api) => api.emptyTrash());
        printResult(options.json, result, () => `deleted ${result.entries} trash entr${result.entries === 1 ? 'y' : 'ies'} for good`);
      }),
    );
}
