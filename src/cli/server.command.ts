import type { Command } from 'commander';
import { action, stopSignal } from './io.js';

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

export function registerServerCommands(program: Command): void {
  const server = program.command('server').description('run and administer the photovault server');

  serverDataOptions(
    server.command('start').description('start the server with every service, on the embedded default unless configured otherwise'),
  )
    .option('--host <host>', 'address to listen on (default 0.0.0.0)')
    .option('--port <port>', 'port to listen on; 0 picks a free one (default 8420)')
    .action(
      action(async (options: { data?: string; config?: string; host?: string; port?: string }) => {
        const serverFlags = {
          ...(options.host ? { host: options.host } : {}),
          ...(options.port !== undefined ? { port: options.port } : {}),
        };
        const config = await configFromFlags(options, Object.keys(serverFlags).length ? { server: serverFlags } : {});
        const { startServer } = await import('../server/server.js');
        const running = await startServer(config);
        running.app.log.info(
          { url: running.url, dataDir: config.dataDir, database: config.database.url ? 'postgresql' : 'sqlite' },
          'photovault server started',
        );
        await stopSignal();
        running.app.log.info('shutting down');
        await running.close();
      }),
    );
}
