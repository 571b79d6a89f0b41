/**
 * Harness for benchmarks that drive the real CLI: child processes that are always cleaned up, a
 * photovault server on a data dir of its own, and the Linux /proc counters (CPU, I/O, disk) the
 * figures are read from. Linux only, like the deployments it measures.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

export const MiB = 1024 ** 2;
export const GiB = 1024 ** 3;

/** The initial set of bench:sync: 2,000 files of 64-448 KiB (498 MiB) at scale 1, in 20 folders. */
export async function makeInitialSet(folder: string, scale: number): Promise<{ files: number; bytes: number }> {
  const files = Math.round(2000 * scale);
  let bytes = 0;
  for (let i = 0; i < files; i++) {
    const size = 64 * 1024 + ((i * 7919) % (384 * 1024));
    bytes += size;
    await mkdir(join(folder, `d${i % 20}`), { recursive: true });
    await writeFile(join(folder, `d${i % 20}`, `f${i}.bin`), randomBytes(size));
  }
  return { files, bytes };
}

/** A text table: a label column, then right-aligned columns, under a rule. */
export function table(title: string, columns: string[], rows: [string, ...string[]][]): string {
  const labelWidth = Math.max(title.length, ...rows.map((row) => row[0].length)) + 2;
  const widths = columns.map((column, i) => Math.max(column.length, ...rows.map((row) => (row[i + 1] ?? '').length)) + 2);
  const line = (cells: string[]) =>
    cells[0]!.padEnd(labelWidth) +
    cells
      .slice(1)
      .map((cell, i) => cell.padStart(widths[i]!))
      .join('');
  const rule = '-'.repeat(labelWidth + widths.reduce((a, b) => a + b, 0));
  return [line([title, ...columns]), rule, ...rows.map((row) => line(row))].join('\n');
}

/** A positive number from the environment (PV_BENCH_*), else the fallback; anything else stops the bench. */
export function numberSetting(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}=${raw}: expected a positive number`);
  return value;
}

// ---------------------------------------------------------------------------------------------
// Clean-up: children are killed and temp dirs removed on every way out, errors and ^C included.

const liveChildren = new Set<ChildProcess>();
const exitTasks: (() => void)[] = [];
let cleanupInstalled = false;

/** Runs `task` (synchronous: it may run from the 'exit' event) when the process ends, however it ends. */
export function atExit(task: () => void): void {
  installCleanup();
  exitTasks.push(task);
}

/** Removes a directory tree when the process ends. */
export function removeAtExit(dir: string): void {
  atExit(() => rmSync(dir, { recursive: true, force: true }));
}

function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  process.on('exit', () => {
    for (const child of liveChildren) child.kill('SIGKILL');
    liveChildren.clear();
    // Last registered, first run: the children before the directories they were using.
    for (const task of exitTasks.splice(0).reverse()) {
      try {
        task();
      } catch (error) {
        process.stderr.write(`clean-up failed: ${(error as Error).message}\n`);
      }
    }
  });
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const) {
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: cleaning up\n`);
      process.exit(code);
    });
  }
}

/** Starts a long-running helper process (a peer, a test server) that is killed when the bench ends. */
export function spawnBackground(command: string, args: string[]): ChildProcess {
  return track(spawn(command, args, { stdio: 'ignore' }));
}

function track(child: ChildProcess): ChildProcess {
  installCleanup();
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  return child;
}

// ---------------------------------------------------------------------------------------------
// Child processes.

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit, in seconds. */
  seconds: number;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, which is then closed; without it stdin is /dev/null. */
  input?: string;
  /** Killed with SIGKILL after this long (the run then fails). */
  timeoutSeconds?: number;
}

/** Runs a command to completion, collecting its output; fails on a spawn error or a timeout, not on an exit code. */
export function run(command: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const started = performance.now();
    const child = track(
      spawn(command, args, { env: options.env ?? process.env, stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] }),
    );
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout!.on('data', (piece: Buffer) => stdout.push(piece));
    child.stderr!.on('data', (piece: Buffer) => stderr.push(piece));
    if (options.input !== undefined) child.stdin!.end(options.input);
    let timedOut = false;
    const timer =
      options.timeoutSeconds === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, options.timeoutSeconds * 1000);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      const seconds = (performance.now() - started) / 1000;
      clearTimeout(timer);
      if (timedOut) return reject(new Error(`${command} ${args.join(' ')}: no exit after ${options.timeoutSeconds} s, killed`));
      resolvePromise({
        code,
        signal,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
        seconds,
      });
    });
  });
}

/** run(), failing unless the exit code is 0. */
/**
 * Writes every dirty page to disk (sync(1)) and waits for it, so that a timed run does not pay
 * for the writeback of what was written before it (a data set of 100,000 files, say), and two
 * peers measured one after the other start from the same clean state.
 */
export async function flushDirtyPages(): Promise<void> {
  await runOk('sync', []);
}

export async function runOk(command: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const result = await run(command, args, options);
  if (result.code !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} exited with ${result.code ?? result.signal}:\n${result.stderr.trim() || result.stdout.trim()}`,
    );
  }
  return result;
}

/** The photovault CLI of this checkout (bin/photovault over dist/), run by this very node. */
export class Cli {
  constructor(
    readonly bin: string,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  /** The same CLI with extra environment variables (e.g. PHOTOVAULT_CONFIG_DIR). */
  with(env: NodeJS.ProcessEnv): Cli {
    return new Cli(this.bin, { ...this.env, ...env });
  }

  run(args: string[], options: Omit<RunOptions, 'env'> = {}): Promise<RunResult> {
    return run(process.execPath, [this.bin, ...args], { ...options, env: this.env });
  }

  runOk(args: string[], options: Omit<RunOptions, 'env'> = {}): Promise<RunResult> {
    return runOk(process.execPath, [this.bin, ...args], { ...options, env: this.env });
  }

  /** `photovault server start` on a data dir, on a free loopback port; resolves once it listens. */
  startServer(dataDir: string, timeoutSeconds = 60): Promise<ServerProcess> {
    // Spawned as `node bin/photovault`, so the child's pid is the server's own (no env, no shell).
    const child = track(
      spawn(process.execPath, [this.bin, 'server', 'start', '--data', dataDir, '--host', '127.0.0.1', '--port', '0'], {
        env: this.env,
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    return ServerProcess.await(child, timeoutSeconds);
  }
}

export interface RouteTime {
  /** Sum of the requests' durations, in seconds. */
  seconds: number;
  count: number;
}

/** Per-route durations between two readings of ServerProcess.requestDurations(). */
export function routeTimeDelta(before: Map<string, RouteTime>, after: Map<string, RouteTime>): Map<string, RouteTime> {
  const delta = new Map<string, RouteTime>();
  for (const [key, { seconds, count }] of after) {
    const earlier = before.get(key) ?? { seconds: 0, count: 0 };
    if (count > earlier.count) delta.set(key, { seconds: seconds - earlier.seconds, count: count - earlier.count });
  }
  return delta;
}

/** A running `photovault server start`; its log is drained (and its lines counted) as it comes. */
export class ServerProcess {
  /** pino lines the server has printed so far (one per request received and one per answer, at level info). */
  logLines = 0;
  private stderrTail = '';
  private readonly exited: Promise<void>;

  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
  ) {
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
  }

  static await(child: ChildProcess, timeoutSeconds: number): Promise<ServerProcess> {
    return new Promise((resolve, reject) => {
      let server: ServerProcess | undefined;
      let lines = 0;
      let stderr = '';
      const fail = (message: string) => {
        clearTimeout(timer);
        child.kill('SIGKILL');
        reject(new Error(`photovault server start: ${message}${stderr.trim() ? `\n${stderr.trim().slice(-2000)}` : ''}`));
      };
      const timer = setTimeout(() => fail(`not listening after ${timeoutSeconds} s`), timeoutSeconds * 1000);
      child.stderr!.on('data', (piece: Buffer) => {
        stderr = (stderr + piece.toString('utf8')).slice(-8000);
        if (server) server.stderrTail = stderr;
      });
      child.once('error', (error) => fail(error.message));
      child.once('exit', (code, signal) => {
        if (!server) fail(`exited with ${code ?? signal} before it listened`);
      });
      createInterface({ input: child.stdout!, crlfDelay: Infinity }).on('line', (line) => {
        lines++;
        if (server) {
          server.logLines = lines;
          return;
        }
        let entry: { msg?: unknown; url?: unknown };
        try {
          entry = JSON.parse(line) as typeof entry;
        } catch {
          return;
        }
        if (entry.msg === 'photovault server started' && typeof entry.url === 'string') {
          clearTimeout(timer);
          server = new ServerProcess(child, entry.url);
          server.logLines = lines;
          server.stderrTail = stderr;
          resolve(server);
        }
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** CPU seconds (user + system, all threads) the server has used so far. */
  cpuSeconds(): number {
    return processCpuSeconds(this.pid);
  }

  /** CPU seconds so far per kind of thread: the event loop, the libuv pool (file I/O, fsync), and the rest (V8, GC). */
  threadCpuSeconds(): ThreadCpu {
    return threadCpuSeconds(this.pid);
  }

  /** Bytes the server has caused to be written to storage so far (/proc/<pid>/io write_bytes), if readable. */
  storageWriteBytes(): number | undefined {
    return processWriteBytes(this.pid);
  }

  /**
   * Server-side request durations so far, from the Prometheus histogram on /metrics, by
   * "METHOD route" (e.g. "PUT /api/v1/uploads/:id/chunks/:hash"); empty if the endpoint is gone.
   */
  async requestDurations(): Promise<Map<string, RouteTime>> {
    const totals = new Map<string, RouteTime>();
    let text: string;
    try {
      const response = await fetch(`${this.url}/metrics`);
      if (!response.ok) return totals;
      text = await response.text();
    } catch {
      return totals;
    }
    const line = /^\w*http_request_duration_seconds_(sum|count)\{([^}]*)\}\s+(\S+)$/;
    for (const row of text.split('\n')) {
      const match = line.exec(row);
      if (!match) continue;
      const labels = Object.fromEntries([...match[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
      const key = `${labels.method} ${labels.route}`;
      const entry = totals.get(key) ?? { seconds: 0, count: 0 };
      if (match[1] === 'sum') entry.seconds += Number(match[3]);
      else entry.count += Number(match[3]);
      totals.set(key, entry);
    }
    return totals;
  }

  /** SIGTERM (a clean shutdown), then SIGKILL if it has not exited after `graceSeconds`. */
  async stop(graceSeconds = 15): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        process.stderr.write(`server ${this.pid} ignored SIGTERM for ${graceSeconds} s; killing it\n${this.stderrTail.slice(-2000)}\n`);
        this.child.kill('SIGKILL');
        resolve();
      }, graceSeconds * 1000);
    });
    await Promise.race([this.exited, killed]);
    clearTimeout(timer);
    await this.exited;
  }
}

// ---------------------------------------------------------------------------------------------
// Bytes on the wire.

/**
 * A TCP proxy on a free loopback port in front of a server, counting the bytes that pass each
 * way: what a client and the server said to each other, HTTP and protocol framing included (TCP
 * and IP headers not). Point clients at url() instead of the server's URL.
 */
export class ByteCountingProxy {
  /** Bytes from clients to the server so far. */
  bytesToServer = 0;
  /** Bytes from the server to clients so far. */
  bytesFromServer = 0;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly listener: Server,
    readonly port: number,
  ) {}

  /** Listens on 127.0.0.1 (a free port) and forwards each connection to `target`, an http:// URL or host:port. */
  static start(target: string): Promise<ByteCountingProxy> {
    const { hostname, port } = new URL(target.includes('://') ? target : `tcp://${target}`);
    return new Promise((resolve, reject) => {
      let proxy: ByteCountingProxy;
      const listener = createServer((client) => {
        const upstream = connect(Number(port), hostname.replace(/^\[|\]$/g, ''));
        for (const socket of [client, upstream]) {
          proxy.sockets.add(socket);
          socket.once('close', () => proxy.sockets.delete(socket));
        }
        client.on('data', (piece: Buffer) => (proxy.bytesToServer += piece.length));
        upstream.on('data', (piece: Buffer) => (proxy.bytesFromServer += piece.length));
        client.pipe(upstream);
        upstream.pipe(client);
        // Either side going away (or failing) ends the pair, as a direct connection would.
        const end = () => {
          client.destroy();
          upstream.destroy();
        };
        for (const socket of [client, upstream]) socket.once('error', end).once('close', end);
      });
      listener.once('error', reject);
      listener.listen(0, '127.0.0.1', () => {
        const address = listener.address();
        if (!address || typeof address === 'string') return reject(new Error('proxy has no port'));
        proxy = new ByteCountingProxy(listener, address.port);
        resolve(proxy);
      });
    });
  }

  /** Both directions. */
  get totalBytes(): number {
    return this.bytesToServer + this.bytesFromServer;
  }

  /** `serverUrl` with its host and port replaced by the proxy's. */
  url(serverUrl: string): string {
    const url = new URL(serverUrl);
    url.hostname = '127.0.0.1';
    url.port = String(this.port);
    return url.toString().replace(/\/$/, '');
  }

  /** Stops listening and cuts the connections still open. */
  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => this.listener.close(() => resolve()));
  }
}

// ---------------------------------------------------------------------------------------------
// /proc counters.

let clockTicks: number | undefined;

/** Kernel clock ticks per second (`getconf CLK_TCK`), the unit of the CPU times in /proc/<pid>/stat. */
export function clockTicksPerSecond(): number {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  if (!Number.isFinite(clockTicks) || clockTicks <= 0) throw new Error('getconf CLK_TCK gave no number');
  return clockTicks;
}

/** The fields of /proc/<pid>/stat after the command name (field 3, the state, is index 0). */
function statFields(pid: number | string): string[] {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) is in parentheses and may itself hold spaces or parentheses.
  return text
    .slice(text.lastIndexOf(')') + 2)
    .trim()
    .split(/\s+/);
}

/** utime + stime (fields 14 and 15) of a process, all its threads, in seconds. */
export function processCpuSeconds(pid: number): number {
  const fields = statFields(pid);
  return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond();
}

export interface ThreadCpu {
  /** The main thread: JavaScript, the event loop, and the syscalls it makes itself. */
  main: number;
  /** libuv's thread pool: fs calls (write, fsync, rename, ...), crypto.pbkdf2/scrypt, dns.lookup. */
  pool: number;
  /** Everything else: V8's platform workers (GC, compilation), worker_threads, inspector. */
  other: number;
  /** Per-thread seconds by tid, so a later reading can be subtracted exactly. */
  byThread: Map<number, { kind: keyof Omit<ThreadCpu, 'byThread'>; seconds: number; comm: string }>;
}

/** Reads /proc/<pid>/task/<tid>/stat for every live thread; threads that already exited are missing. */
export function threadCpuSeconds(pid: number): ThreadCpu {
  const result: ThreadCpu = { main: 0, pool: 0, other: 0, byThread: new Map() };
  for (const name of readdirSync(`/proc/${pid}/task`)) {
    const tid = Number(name);
    let comm: string;
    let fields: string[];
    try {
      comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      fields = statFields(`${pid}/task/${tid}`);
    } catch {
      continue; // exited meanwhile
    }
    const seconds = (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond();
    const kind = tid === pid ? 'main' : comm.startsWith('libuv-worker') ? 'pool' : 'other';
    result[kind] += seconds;
    result.byThread.set(tid, { kind, seconds, comm });
  }
  return result;
}

/** CPU per thread kind between two readings; a thread born in between counts from zero. */
export function threadCpuDelta(before: ThreadCpu, after: ThreadCpu): Omit<ThreadCpu, 'byThread'> & { otherByName: Map<string, number> } {
  const delta = { main: 0, pool: 0, other: 0, otherByName: new Map<string, number>() };
  for (const [tid, { kind, seconds, comm }] of after.byThread) {
    const spent = seconds - (before.byThread.get(tid)?.seconds ?? 0);
    delta[kind] += spent;
    if (kind === 'other') delta.otherByName.set(comm, (delta.otherByName.get(comm) ?? 0) + spent);
  }
  return delta;
}

/**
 * cutime + cstime (fields 16 and 17) of this process: the CPU time of its children that have
 * exited and been reaped. Read before and after one child runs, it gives that child's CPU time.
 */
export function reapedChildrenCpuSeconds(): number {
  const fields = statFields('self');
  return (Number(fields[13]) + Number(fields[14])) / clockTicksPerSecond();
}

/** VmRSS of a process (/proc/<pid>/status): the memory it holds in RAM now, in bytes. */
export function processRssBytes(pid: number): number {
  return statusBytes(pid, 'VmRSS');
}

/** VmHWM of a process: the most it has held in RAM at any time, in bytes. */
export function processPeakRssBytes(pid: number): number {
  return statusBytes(pid, 'VmHWM');
}

function statusBytes(pid: number, field: string): number {
  const match = new RegExp(`^${field}:\\s*(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** write_bytes of /proc/<pid>/io: bytes this process caused to be sent to the storage layer. */
export function processWriteBytes(pid: number): number | undefined {
  try {
    const match = /^write_bytes:\s*(\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * CPU seconds the whole machine has been busy (all cores: user, nice, system, irq, softirq, steal;
 * not idle or iowait), from /proc/stat. Minus what the measured processes used, it shows how much
 * else was running: on a shared machine, the noise in a figure.
 */
export function machineBusyCpuSeconds(): number {
  const fields = /^cpu\s+(.*)$/m.exec(readFileSync('/proc/stat', 'utf8'))![1]!.trim().split(/\s+/).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  return (user + nice + system + irq + softirq + steal) / clockTicksPerSecond();
}

/** CPU seconds (user + system) of this process, all threads. */
export function ownCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

export interface DiskCounters {
  device: string;
  writesCompleted: number;
  sectorsWritten: number;
  /** Milliseconds the device had I/O in flight (its utilisation when divided by wall time). */
  busyMs: number;
  /** Cache flushes completed (kernel 5.5+): roughly the fsyncs and journal commits that reached the disk. */
  flushes: number | undefined;
}

/** /proc/diskstats of the block device holding `path`, or undefined (tmpfs, overlay without a device, not Linux). */
export function diskCounters(path: string): DiskCounters | undefined {
  let dev: number;
  let text: string;
  try {
    dev = statSync(path).dev;
    text = readFileSync('/proc/diskstats', 'utf8');
  } catch {
    return undefined;
  }
  // Linux's dev_t encoding: major in bits 8-19 (and 32+), minor in bits 0-7 and 20-31.
  const major = Math.floor(dev / 256) & 0xfff;
  const minor = (dev & 0xff) | (Math.floor(dev / 4096) & 0xfff00);
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (Number(f[0]) !== major || Number(f[1]) !== minor) continue;
    return {
      device: f[2]!,
      writesCompleted: Number(f[7]),
      sectorsWritten: Number(f[9]),
      busyMs: Number(f[12]),
      flushes: f[18] === undefined ? undefined : Number(f[18]),
    };
  }
  return undefined;
}

export interface DiskDelta {
  device: string;
  bytesWritten: number;
  writes: number;
  busyMs: number;
  flushes: number | undefined;
}

export function diskDelta(before: DiskCounters | undefined, after: DiskCounters | undefined): DiskDelta | undefined {
  if (!before || !after || before.device !== after.device) return undefined;
  return {
    device: after.device,
    bytesWritten: (after.sectorsWritten - before.sectorsWritten) * 512,
    writes: after.writesCompleted - before.writesCompleted,
    busyMs: after.busyMs - before.busyMs,
    flushes: before.flushes === undefined || after.flushes === undefined ? undefined : after.flushes - before.flushes,
  };
}
