import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import { WebSocket, WebSocketServer } from 'ws';
import { isPvError } from '../../core/errors.js';
import { API_PREFIX } from '../../core/api-prefix.js';
import type { Principal, UserService } from '../user/user.service.js';
import type { ChangeNotifier } from './change-notifier.js';
import { type DevicePresence, PRESENCE_RENEWAL_MS } from './device-presence.js';
import type { SyncService } from './sync.service.js';

/**
 * The sync WebSocket (`/api/v1/sync`, DESIGN section 4). Messages are JSON objects with a type:
 *
 *   server -> client  {type:'hello', latest, cursor}          on connect
 *                     {type:'changed', latest}                 whenever the user's feed moves on
 *                     {type:'presence', devices:[{id, online, cursor}]}   on connect, ack, leave
 *                     {type:'error', code, message}            a message the server cannot take
 *   client -> server  {type:'ack', seq}                        applied every change up to seq
 *
 * The client authenticates in the upgrade request with `Authorization: Bearer <token>`.
 */
export const SYNC_PATH = `${API_PREFIX}/sync`;

/** Pings find vanished peers, and renew the presence of the devices here. */
const HEARTBEAT_MS = PRESENCE_RENEWAL_MS;

interface Connection {
  socket: WebSocket;
  principal: Principal;
  alive: boolean;
  /** The newest sequence number this socket was told about. */
  told: number;
}

export class SyncHub {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  private readonly byUser = new Map<string, Set<Connection>>();
  private readonly unsubscribe = new Map<string, () => void>();
  private readonly heartbeat: NodeJS.Timeout;

  constructor(
    private readonly users: UserService,
    private readonly sync: SyncService,
    private readonly notifier: ChangeNotifier,
    private readonly presence: DevicePresence,
    private readonly log: FastifyBaseLogger,
  ) {
    // A peer that vanished without closing (laptop lid shut) is found by a missed pong; the
    // devices still here are held online for every process to see.
    this.heartbeat = setInterval(() => {
      for (const connections of this.byUser.values()) {
        for (const connection of connections) {
          if (!connection.alive) connection.socket.terminate();
          connection.alive = false;
          connection.socket.ping();
          const { userId, deviceId } = connection.principal;
          if (deviceId) this.run(this.presence.hold(userId, deviceId));
        }
      }
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  /** Takes over WebSocket upgrades of the sync path on this HTTP server. */
  attach(server: Server): void {
    server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (new URL(request.url ?? '/', 'http://x').pathname !== SYNC_PATH) {
        socket.destroy();
        return;
      }
      this.run(this.upgrade(request, socket, head), () => socket.destroy());
    });
  }

  /** Closes every connection. */
  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    for (const connections of this.byUser.values()) for (const { socket } of connections) socket.close(1001, 'server shutting down');
    for (const stop of this.unsubscribe.values()) stop();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  /** Runs background work of the hub; a failure is logged (and the connection dropped), never lost. */
  private run(work: Promise<void>, onFailure?: () => void): void {
    work.catch((error: unknown) => {
      this.log.error({ err: error }, 'sync hub failed');
      onFailure?.();
    });
  }

  private async upgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const header = request.headers.authorization;
    const token = header?.startsWith('Bearer ') ? header.slice(7).trim() : '';
    let principal: Principal;
    try {
      principal = await this.users.authenticate(token);
    } catch (error) {
      if (!isPvError(error)) throw error;
      socket.end(
        'HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n' +
          JSON.stringify({ code: error.code, detail: error.message }),
      );
      return;
    }
    this.wss.handleUpgrade(request, socket, head, (ws) => this.run(this.connected(ws, principal), () => ws.terminate()));
  }

  private async connected(socket: WebSocket, principal: Principal): Promise<void> {
    const connection: Connection = { socket, principal, alive: true, told: 0 };
    let connections = this.byUser.get(principal.userId);
    if (!connections) {
      this.byUser.set(principal.userId, (connections = new Set()));
      this.unsubscribe.set(
        principal.userId,
        this.notifier.subscribe(principal.userId, (signal) =>
          this.run(signal === 'feed' ? this.pushChanged(principal.userId) : this.pushPresence(principal.userId)),
        ),
      );
    }
    connections.add(connection);
    socket.on('pong', () => (connection.alive = true));
    socket.on('message', (data) => this.run(this.received(connection, data.toString())));
    socket.on('close', () => this.left(connection));

    if (principal.deviceId) await this.presence.hold(principal.userId, principal.deviceId);
    const latest = await this.sync.latest(principal.userId);
    const cursors = await this.sync.cursors(principal.userId);
    connection.told = latest;
    send(socket, { type: 'hello', latest, cursor: principal.deviceId ? (cursors.get(principal.deviceId) ?? 0) : null });
    this.notifier.presenceChanged(principal.userId);
  }

  private async received(connection: Connection, text: string): Promise<void> {
    let message: { type?: unknown; seq?: unknown };
    try {
      message = JSON.parse(text) as typeof message;
    } catch {
      send(connection.socket, { type: 'error', code: 'PV_INVALID_INPUT', message: 'Messages are JSON objects.' });
      return;
    }
    if (message.type !== 'ack' || !Number.isSafeInteger(message.seq) || (message.seq as number) < 0) {
      send(connection.socket, { type: 'error', code: 'PV_INVALID_INPUT', message: "Expected {type:'ack', seq:<integer>}." });
      return;
    }
    try {
      await this.sync.acknowledge(connection.principal, message.seq as number);
    } catch (error) {
      if (!isPvError(error)) throw error;
      send(connection.socket, { type: 'error', code: error.code, message: error.message });
      return;
    }
    this.notifier.presenceChanged(connection.principal.userId);
  }

  private left(connection: Connection): void {
    const { userId, deviceId } = connection.principal;
    const connections = this.byUser.get(userId);
    connections?.delete(connection);
    if (connections?.size === 0) {
      this.byUser.delete(userId);
      this.unsubscribe.get(userId)?.();
      this.unsubscribe.delete(userId);
    }
    // Another socket of the same device (a reconnect overlapping the old one) keeps it online.
    const stillHere = [...(connections ?? [])].some((other) => other.principal.deviceId === deviceId);
    if (deviceId && !stillHere) {
      this.run(this.presence.release(userId, deviceId).then(() => this.notifier.presenceChanged(userId)));
    }
  }

  private async pushChanged(userId: string): Promise<void> {
    const latest = await this.sync.latest(userId);
    for (const connection of this.byUser.get(userId) ?? []) {
      if (latest <= connection.told) continue;
      connection.told = latest;
      send(connection.socket, { type: 'changed', latest });
    }
  }

  /** Which of the user's devices are connected to any server process, and how far each has applied the feed. */
  private async pushPresence(userId: string): Promise<void> {
    const connections = this.byUser.get(userId);
    if (!connections) return;
    const cursors = await this.sync.cursors(userId);
    const here = [...connections].map((c) => c.principal.deviceId).filter((id): id is string => id !== null);
    const online = await this.presence.online(userId, [...cursors.keys(), ...here]);
    for (const id of here) online.add(id);
    const ids = new Set([...cursors.keys(), ...online]);
    const devices = [...ids].map((id) => ({ id, online: online.has(id), cursor: cursors.get(id) ?? 0 }));
    for (const { socket } of connections) send(socket, { type: 'presence', devices });
  }
}

function send(socket: WebSocket, message: object): void {
  if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}
