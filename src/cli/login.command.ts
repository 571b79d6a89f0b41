import { hostname } from 'node:os';
import type { Command } from 'commander';
import { action, printResult, readSecret } from './io.js';
import { withApi } from './session.js';

export function registerLoginCommands(program: Command): void {
  program
    .command('login')
    .description('log in to a server and save the session in the client config dir (PHOTOVAULT_CONFIG_DIR overrides)')
    .requiredOption('--server <url>', 'server URL, e.g. http://pi.local:8420')
    .requiredOption('--user <name>', 'user name')
    .option('--password-stdin', 'read the password from standard input')
    .option('--device <name>', 'name of this device (default: the host name)')
    .option('--json', 'print the result as JSON')
    .action(
      action(async (options: { server: string; user: string; passwordStdin?: boolean; device?: string; json?: boolean }) => {
        const password = await readSecret(options.passwordStdin, `Password for ${options.user}: `);
        const [{ clientConfigDir }, { findCredentials, saveCredentials }, { ApiClient }] = await Promise.all([
          import('../core/client-config.js'),
          import('../daemon/credentials.js'),
          import('../daemon/api-client.js'),
        ]);
        const configDir = clientConfigDir();
        // Logging in again from the same machine keeps its device identity.
        const previous = await findCredentials(configDir);
        const deviceName = options.device ?? previous?.deviceName ?? hostname();
        const api = new ApiClient(options.server, null);
        try {
          const result = await api.login({
            user: options.user,
            password,
            deviceName,
            ...(previous && previous.server === options.server && previous.user === options.user ? { deviceId: previous.deviceId } : {}),
          });
          await saveCredentials(configDir, {
            server: options.server,
            user: result.user.name,
            token: result.token,
            deviceId: result.device.id,
            deviceName: result.device.name,
          });
          printResult(
            options.json,
            { server: options.server, user: result.user, device: result.device, expiresAt: result.expiresAt },
            () => `logged in to ${options.server} as ${result.user.name} (device ${result.device.name})`,
          );
        } finally {
          await api.close();
        }
      }),
    );

  program
    .command('logout')
    .description('end the session and forget the saved credentials')
    .action(
      action(async () => {
        await withApi((api) => api.logout());
        const [{ clientConfigDir }, { removeCredentials }] = await Promise.all([
          import('../core/client-config.js'),
          import('../daemon/credentials.js'),
        ]);
        await removeCredentials(clientConfigDir());
        process.stdout.write('logged out\n');
      }),
    );
}
