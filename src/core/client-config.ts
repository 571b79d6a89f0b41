import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** The client's config dir (credentials): PHOTOVAULT_CONFIG_DIR, else $XDG_CONFIG_HOME/photovault. */
export function clientConfigDir(env: Record<string, string | undefined> = process.env): string {
  if (env.PHOTOVAULT_CONFIG_DIR) return resolve(env.PHOTOVAULT_CONFIG_DIR);
  return join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'photovault');
}

/** Where running daemons put their control sockets: $XDG_RUNTIME_DIR/photovault, else <config dir>/run. */
export function clientRuntimeDir(env: Record<string, string | undefined> = process.env): string {
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'photovault');
  return join(clientConfigDir(env), 'run');
}
