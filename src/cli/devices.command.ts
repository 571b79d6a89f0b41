import type { Command } from 'commander';
import { action, printResult } from './io.js';
import { withApi } from './session.js';

export function registerDeviceCommands(program: Command): void {
  const devices = program.command('devices').description("list or revoke this user's devices");
  devices
    .command('ls', { isDefault: true })
    .description('list devices')
    .option('--json', 'print the devices as JSON')
    .action(
      action(async (options: { json?: boolean }) => {
        const list = await withApi((api) => api.devices());
        printResult(options.json, list, () =>
          list
            .map(
              (d) =>
                `${d.id}  ${d.name}${d.current ? ' (this device)' : ''}${d.revokedAt ? ' (revoked)' : ''}${d.inSync ? '  in sync' : `  at change ${d.cursor}`}  last seen ${d.lastSeenAt}`,
            )
            .join('\n'),
        );
      }),
    );
  devices
    .command('revoke <id>')
    .description('revoke a device: its sessions end at once')
    .action(
      action(async (id: string) => {
        await withApi((api) => api.revokeDevice(id));
        process.stdout.write(`revoked device ${id}\n`);
      }),
    );

  const apiKey = program.command('apikey').description('API keys for scripts (Authorization: Bearer <key>)');
  apiKey
    .command('create [label]')
    .description('create an API key; it is shown only once')
    .option('--json', 'print the key as JSON')
    .action(
      action(async (label: string | undefined, options: { json?: boolean }) => {
        const created = await withApi((api) => api.createApiKey(label));
        printResult(options.json, created, () => created.token);
      }),
    );
  apiKey
    .command('ls')
    .description('list API keys')
    .option('--json', 'print the keys as JSON')
    .action(
      action(async (options: { json?: boolean }) => {
        const keys = await withApi((api) => api.apiKeys());
        printResult(
          options.json,
          keys,
          () => keys.map((k) => `${k.id}  ${k.label ?? ''}  last used ${k.lastUsedAt}`).join('\n') || '(no API keys)',
        );
      }),
    );
  apiKey
    .command('revoke <id>')
    .description('revoke an API key')
    .action(
      action(async (id: string) => {
        await withApi((api) => api.revokeApiKey(id));
        process.stdout.write(`revoked API key ${id}\n`);
      }),
    );
}
