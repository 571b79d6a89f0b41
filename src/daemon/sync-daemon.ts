import { sep } from 'node:path';
import { type FSWatcher, watch } from 'chokidar';
import WebSocket from 'ws';
import { API_PREFIX } from '../core/api-prefix.js';
import type { FolderStatus } from './control-socket.js';
import type { SyncEngine, SyncSummary } from './sync-engine.js';

export interface SyncDaemonOptions {
  server: string;
  token: string;
  /** The remote folder, for status reports. */
  remote?: string;
  /** A file must be left alone this long before it is synced, so half-written files never go up. */
  settleMs?: number;
  /** A full pass runs at least this often, catching anything a watcher or socket missed. */
  fullPassMs?: number;
  onPass?: (summary: SyncSummary) => void;
  onError?: (error: unknown) => void;
}

const RECONNECT_MIN_MS = 1_000;
const RECONNECT_MAX_MS = 30_000;

/**
 * Keeps a folder in sync continuously: a pass runs when a local file settles (chokidar), when the
 * server says the feed moved on (the sync socket), after reconnecting (catch-up after being
 * offline), and every few minutes regardless. Passes never overlap; triggers during a pass
 * queue one more.
 */
export class SyncDaemon {
  private watcher: FSWatcher | undefined;
  private socket: WebSocket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private fullPass: NodeJS.Timeout | undefined;
  private reconnectDelay = RECONNECT_MIN_MS;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private recheck: NodeJS.Timeout | undefined;
  private readonly settleMs: number;
  private connected = false;
  private lastPassAt: Date | null = null;
  private readonly totals = { uploaded: 0, downloaded: 0, deleted: 0, conflicts: 0, bytesSent: 0, bytesReceived: 0 };
  private readonly recent: { at: string; text: string }[] = [];
  /** (time, bytes up, bytes down) of recent passes, for the transfer rates. */
  private readonly transfers: { at: number; up: number; down: number }[] = [];

  constructor(
    private readonly engine: SyncEngine,
    private readonly root: string,
    private readonly options: SyncDaemonOptions,
  ) {
    this.settleMs = options.settleMs ?? 500;
  }

  /**
   * Starts watching and connecting, and resolves once the watcher is ready; then the first pass
   * runs. (A change made before the watcher is ready is still found by that first pass.)
   */
  async start(): Promise<void> {
    const settleMs = this.settleMs;
    this.watcher = watch(this.root, {
      ignoreInitial: true,
      ignored: (path: string) => path.includes(`${sep}.photovault`) || path.endsWith('.pvpart'),
      awaitWriteFinish: { stabilityThreshold: settleMs, pollInterval: Math.min(100, settleMs) },
    });
    this.watcher.on('all', () => this.schedule(0));
    this.watcher.on('error', (error) => this.options.onError?.(error));
    await new Promise<void>((resolve) => this.watcher!.once('ready', () => resolve()));
    this.fullPass = setInterval(() => this.schedule(0), this.options.fullPassMs ?? 300_000);
    this.connect();
    this.schedule(0);
  }

  /** Stops watching and listening, and waits for a pass in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.recheck);
    clearTimeout(this.reconnectTimer);
    clearInterval(this.fullPass);
    this.socket?.close();
    await this.watcher?.close();
    await this.running;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.pass(), delayMs);
  }

  private async pass(): Promise<void> {
    this.running = (async () => {
      try {
        const summary = await this.engine.syncOnce();
        this.record(summary);
        this.options.onPass?.(summary);
        // The watcher can drop a local change made while it was still settling this pass's own
        // writes (a file deleted right after it was downloaded): look once more when that is over.
        if (summary.downloaded + summary.deleted > 0) this.recheck = setTimeout(() => this.schedule(0), 2 * this.settleMs);
      } catch (error) {
        // Offline, refused, or a local file system error: reported, and the next trigger (the
        // reconnect, a local change, the periodic pass) tries again; local work is never lost.
        this.event(`error: ${(error as Error).message}`);
        this.options.onError?.(error);
      }
    })();
    try {
      await this.running;
    } finally {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        this.schedule(0);
      }
    }
  }

  private connect(): void {
    if (this.stopped) return;
    const url = new URL(`${API_PREFIX}/sync`, this.options.server);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(url, { headers: { authorization: `Bearer ${this.options.token}` } });
    this.socket = socket;
    socket.on('open', () => {
      this.connected = true;
      this.event('connected to the server');
      this.reconnectDelay = RECONNECT_MIN_MS;
      this.schedule(0);
    });
    socket.on('message', (data) => {
      if (data.toString().includes('"type":"changed"')) this.schedule(0);
    });
    socket.on('error', (error) => this.options.onError?.(error));
    socket.on('close', () => {
      if (this.connected) this.event('disconnected from the server');
      this.connected = false;
      if (this.stopped) return;
      // Exponential backoff, so a server that is down is not hammered.
      this.reconnectTimer = setTimeout(() => this.connect(), this.reconnectDelay);
      this.reconnectDelay = Math.min(this.reconnectDelay * 2, RECONNECT_MAX_MS);
    });
  }

  /** What `photovault status` shows for this folder. */
  status(): FolderStatus {
    const since = Date.now() - 60_000;
    const window = this.transfers.filter((t) => t.at >= since);
    return {
      folder: this.root,
      remote: this.options.remote ?? '',
      connected: this.connected,
      state: this.running ? 'syncing' : 'idle',
      lastPassAt: this.lastPassAt?.toISOString() ?? null,
      rates: { up: window.reduce((sum, t) => sum + t.up, 0) / 60, down: window.reduce((sum, t) => sum + t.down, 0) / 60 },
      totals: { ...this.totals },
      recent: [...this.recent],
    };
  }

  private record(summary: SyncSummary): void {
    this.lastPassAt = new Date();
    for (const key of ['uploaded', 'downloaded', 'deleted', 'conflicts', 'bytesSent', 'bytesReceived'] as const)
      this.totals[key] += summary[key];
    this.transfers.push({ at: Date.now(), up: summary.bytesSent, down: summary.bytesReceived });
    while (this.transfers.length > 0 && this.transfers[0]!.at < Date.now() - 60_000) this.transfers.shift();
    const parts = (['uploaded', 'downloaded', 'deleted', 'conflicts'] as const)
      .filter((key) => summary[key] > 0)
      .map((key) => `${summary[key]} ${key}`);
    if (parts.length > 0) this.event(parts.join(', '));
    for (const failure of summary.failed) this.event(`failed: ${failure.path}: ${failure.message}`);
  }

  private event(text: string): void {
    this.recent.unshift({ at: new Date().toISOString(), text });
    this.recent.length = Math.min(this.recent.length, 20);
  }
}
