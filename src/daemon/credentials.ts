import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isPvError, PvError } from '../core/errors.js';

/** What `photovault login` saves: enough for every later command to reach the server as this device. */
export interface Credentials {
  server: string;
  user: string;
  token: string;
  deviceId: string;
  deviceName: string;
}

const FILE = 'credentials.json';

/** Reads the saved credentials, or throws PV_NOT_LOGGED_IN with the fix. */
export async function loadCredentials(configDir: string): Promise<Credentials> {
  try {
    return JSON.parse(await readFile(join(configDir, FILE), 'utf8')) as Credentials;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    throw new PvError('PV_NOT_LOGGED_IN', 'Not logged in.', { fix: 'Run `photovault login --server URL --user NAME` first.' });
  }
}

/** The saved credentials if any, without failing. */
export async function findCredentials(configDir: string): Promise<Credentials | null> {
  try {
    return await loadCredentials(configDir);
  } catch (error) {
    if (isPvError(error, 'PV_NOT_LOGGED_IN')) return null;
    throw error;
  }
}

/** Saves credentials readable by the owner only, replacing the file atomically. */
export async function saveCredentials(configDir: string, credentials: Credentials): Promise<void> {
  await mkdir(configDir, { recursive: true, mode: 0o700 });
  const temp = join(configDir, `${FILE}.${process.pid}.tmp`);
  await writeFile(temp, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600 });
  await rename(temp, join(configDir, FILE));
}

/** Forgets the saved credentials. */
export async function removeCredentials(configDir: string): Promise<void> {
  await rm(join(configDir, FILE), { force: true });
}
