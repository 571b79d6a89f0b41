import { relative, sep } from 'node:path';
import { type FSWatcher, watch } from 'chokidar';
import WebSocket from 'ws';
import { API_PREFIX } from '../core/api-prefix.js';
import { QuietRelease } from '../core/release-memory.js';
import type { FolderStatus } from './control-socket.js';
import type { SyncEngine, SyncSummary } from './sync-engine.js';

export interface SyncDaemonOptions {
  server: string;
  token: string;
  /** The remote folder, for status reports. */
  remote?: string;
  /** A full pass runs at least this often, catching anything a watcher or socket missed. */
  fullPassMs?: number;
  onPass?: (summary: SyncSummary) => void;
  onError?: (error: unknown) => void;
}

const RECONNECT_MIN_MS = 1_000;
const RECONNECT_MAX_MS = 30_000;
/** Own writes noted before expired ones are swept out. */
const OWN_WRITES_SWEEP_AT = 1_000;
/** Past this many changed paths a pass walks the whole folder: one walk is cheaper than many lookups. */
const MAX_DIRTY_PATHS = 500;

/**
 * Keeps a folder in sync continuously: a pass runs a settle delay after the watcher (chokidar)
 * reports a local change, when the server says the feed moved on (the sync socket), after
 * reconnecting (catch-up after being offline), and every few minutes regardless. Passes never
 * overlap; triggers during a pass queue one more. A pass the watcher started looks only at the
 * paths it reported, so latency does not grow with the folder, as does the recheck of the files
 * pulls wrote (see pass()); the others walk the whole folder.
 */
export class SyncDaemon {
  private watcher: FSWatcher | undefined;
  private socket: WebSocket | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** When the next pass is due (epoch ms): the timer's, or the one after the running pass. */
  private due = Infinity;
  private fullPass: NodeJS.Timeout | undefined;
  private reconnectDelay = RECONNECT_MIN_MS;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private recheck: NodeJS.Timeout | undefined;
  /**
   * Gives the memory of the last passes back once none has run for a while: a walk of the whole
   * folder (the watcher's start, a full pass) leaves hundreds of MiB that V8 alone keeps.
   */
  private readonly quiet = new QuietRelease();
  private readonly settleMs: number;
  /** Files a pull just wrote (absolute paths), until when the watcher ignores them. */
  private readonly ownWrites = new Map<string, number>();
  /** Files pulls wrote since the last recheck (see pass()), or 'all' once there are too many to look at one by one. */
  private written: Set<string> | 'all' = new Set();
  /** What the next pass must look at: the paths the watcher reported, or the whole folder. */
  private dirty: Set<string> | 'all' = 'all';
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
    // A file must be left alone this long before it is synced, so half-written files never go up.
    this.settleMs = engine.settleMs;
    engine.onOwnWrite((path) => this.noteOwnWrite(path));
  }

  /**
   * Starts watching and connecting, and resolves once the watcher is ready; then the first pass
   * runs. (A change made before the watcher is ready is still found by that first pass.)
   */
  async start(): Promise<void> {
    // A pull's writes are told apart in the handler, not ignored here: chokidar does not track a
    // file it ignored, so it would never report the user deleting one later.
    // Nor does chokidar wait for writes to finish (awaitWriteFinish): the pass after the settle
    // delay leaves a file whose mtime is younger alone (SyncEngine), where chokidar would poll every
    // new file, the thousands a first sync downloads included, several times.
    this.watcher = watch(this.root, {
      ignoreInitial: true,
      ignored: (path: string) => path.includes(`${sep}.photovault`) || path.endsWith('.pvpart'),
    });
    this.watcher.on('all', (event, path) => {
      // A pull's write comes back as an add or a change; a deletion is always someone else's.
      if ((event === 'add' || event === 'change') && this.isOwnWrite(path)) return;
      this.markDirty(path);
      this.schedule(this.settleMs);
    });
    this.watcher.on('error', (error) => this.options.onError?.(error));
    await new Promise<void>((resolve) => this.watcher!.once('ready', () => resolve()));
    this.fullPass = setInterval(() => this.scheduleFull(0), this.options.fullPassMs ?? 300_000);
    this.connect();
    this.scheduleFull(0);
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
    this.quiet.stop(); // after the last pass's end has touched it
  }

  /**
   * Notes a file a pull is writing: the watcher's reports of its adds and changes are dropped for
   * 2 * settleMs, so a first sync's thousands of downloads do not each come back as a pass. A
   * user's edit in that window is not lost: 2 * settleMs after a burst of downloading passes, a
   * pass looks at the files they wrote once more (see pass()).
   */
  private noteOwnWrite(path: string): void {
    const now = Date.now();
    if (this.ownWrites.size >= OWN_WRITES_SWEEP_AT)
      for (const [known, until] of this.ownWrites) if (until <= now) this.ownWrites.delete(known);
    this.ownWrites.set(path, now + 2 * this.settleMs);
    if (this.written === 'all') return;
    if (this.written.size >= MAX_DIRTY_PATHS) this.written = 'all';
    else this.written.add(this.relativePath(path));
  }

  private isOwnWrite(path: string): boolean {
    const until = this.ownWrites.get(path);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.ownWrites.delete(path);
    return false;
  }

  /** A path in the folder as the engine names it: relative, '/'-separated. */
  private relativePath(absolute: string): string {
    return relative(this.root, absolute).split(sep).join('/');
  }

  /** Notes a path the watcher reported (absolute) for the next pass. */
  private markDirty(absolute: string): void {
    if (this.dirty === 'all') return;
    const path = this.relativePath(absolute);
    // New ignore rules change what every path is: look at everything.
    if (path === '' || path.endsWith('.pvignore') || this.dirty.size >= MAX_DIRTY_PATHS) this.dirty = 'all';
    else this.dirty.add(path);
  }

  /** Marks what a pass looked at for the next pass again. */
  private markAgain(paths: Set<string> | 'all'): void {
    if (paths === 'all' || this.dirty === 'all') this.dirty = 'all';
    else for (const path of paths) this.dirty.add(path);
  }

  /** Schedules a pass over the whole folder. */
  private scheduleFull(delayMs: number): void {
    this.dirty = 'all';
    this.schedule(delayMs);
  }

  /**
   * Runs a pass in delayMs, or sooner if one is due sooner; never while one runs, but after it.
   * A later trigger never puts a due pass off: a file written to without pause must not hold up
   * the others.
   */
  private schedule(delayMs: number): void {
    if (this.stopped) return;
    const due = Date.now() + delayMs;
    if (due >= this.due) return;
    this.due = due;
    clearTimeout(this.timer);
    if (this.running) return; // the pass's end schedules it
    this.timer = setTimeout(() => {
      this.due = Infinity;
      void this.pass();
    }, delayMs);
  }

  private async pass(): Promise<void> {
    this.running = (async () => {
      try {
        const dirty = this.dirty;
        this.dirty = new Set();
        let summary: SyncSummary;
        try {
          summary = await this.engine.syncOnce({ paths: dirty === 'all' ? undefined : [...dirty] });
        } catch (error) {
          // What this pass was to look at is looked at again, with everything else.
          this.dirty = 'all';
          throw error;
        }
        this.record(summary);
        this.options.onPass?.(summary);
        // A user's edit of a file a pull wrote, made within 2 * settleMs of the write, was taken for
        // the pull's own (noteOwnWrite): look at those files once more when that window is over.
        // Once after a burst of such passes, not after each, and at those files only: a first sync
        // downloads in many passes, and a walk of the whole folder after each made its CPU grow
        // with the square of its files.
        if (this.written === 'all' || this.written.size > 0) {
          clearTimeout(this.recheck);
          this.recheck = setTimeout(() => {
            this.markAgain(this.written);
            this.written = new Set();
            this.schedule(0);
          }, 2 * this.settleMs);
        }
        // Files still being written get another look once settled: the same paths, or everything.
        if (summary.deferred > 0) {
          this.markAgain(dirty);
          this.schedule(this.settleMs);
        }
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
      this.quiet.touch();
      if (this.due < Infinity) {
        const due = this.due;
        this.due = Infinity;
        this.schedule(Math.max(0, due - Date.now()));
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
      this.scheduleFull(0);
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
    const parts = (['uploaded', 'downloaded', 'deleted', 'moved', 'conflicts'] as const)
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
