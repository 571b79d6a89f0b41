import { createHash } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { createConnection, createServer, type Server } from 'node:net';
import { join } from 'node:path';

/** What a running sync daemon reports about its folder (`photovault status`). */
export interface FolderStatus {
  folder: string;
  remote: string;
  /** Whether the sync socket to the server is open. */
  connected: boolean;
  state: 'idle' | 'syncing';
  lastPassAt: string | null;
  /** Bytes per second over the last minute. */
  rates: { up: number; down: number };
  totals: { uploaded: number; downloaded: number; deleted: number; conflicts: number; bytesSent: number; bytesReceived: number };
  /** Newest first, at most 20. */
  recent: { at: string; text: string }[];
}

/**
 * The daemon's control socket: a Unix socket per synced folder in the runtime dir; a client
 * connects and reads one JSON status. Local only, like the daemon itself.
 */
export class ControlSocket {
  private constructor(
    private readonly server: Server,
    readonly path: string,
  ) {}

  static async listen(runtimeDir: string, folder: string, status: () => FolderStatus): Promise<ControlSocket> {
    await mkdir(runtimeDir, { recursive: true, mode: 0o700 });
    const path = join(runtimeDir, `sync-${createHash('sha256').update(folder).digest('hex').slice(0, 16)}.sock`);
    // A socket file left by a daemon that was killed would refuse the bind.
    await rm(path, { force: true });
    const server = createServer((connection) => connection.end(`${JSON.stringify(status())}\n`));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    return new ControlSocket(server, path);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.path, { force: true });
  }
}

/** The status of every daemon with a live control socket in the runtime dir; stale sockets are removed. */
export async function readStatuses(runtimeDir: string): Promise<FolderStatus[]> {
  let names: string[];
  try {
    names = await readdir(runtimeDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const statuses: FolderStatus[] = [];
  for (const name of names.filter((n) => n.startsWith('sync-') && n.endsWith('.sock'))) {
    const status = await readOne(join(runtimeDir, name));
    if (status) statuses.push(status);
  }
  return statuses.sort((a, b) => a.folder.localeCompare(b.folder));
}

async function readOne(path: string): Promise<FolderStatus | null> {
  return new Promise((resolve, reject) => {
    let text = '';
    const socket = createConnection(path);
    socket.setEncoding('utf8');
    socket.on('data', (piece: string) => (text += piece));
    socket.on('end', () => resolve(JSON.parse(text) as FolderStatus));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      // Nobody listening: the daemon that made it is gone.
      if (error.code === 'ECONNREFUSED' || error.code === 'ENOENT') rm(path, { force: true }).then(() => resolve(null), reject);
      else reject(error);
    });
  });
}
