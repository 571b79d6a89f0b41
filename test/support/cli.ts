import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { loadServerConfig } from '../../src/core/config.js';
import type { BlobStore } from '../../src/infra/blobs/blob-store.js';
import type { Db } from '../../src/infra/db/database.js';
import { openConfiguredDatabase, openConfiguredStorage } from '../../src/server/context.js';
import { CLUSTER_BACKENDS, type ClusterBackends, createClusterBackends } from './backends.js';
import { TIME_SCALE } from './time-scale.js';

/**
 * Runs the built CLI (`bin/photovault` -> dist/src/cli/main.js) as a child process, the way a
 * user or a script does. Nothing here builds: `npm test` builds first; run `npm run build`
 * before running an end-to-end suite on its own.
 */

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI_BIN = join(REPO_ROOT, 'bin', 'photovault');
const CLI_MAIN = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

/** Throws a clear error unless the CLI has been built. */
export function assertCliBuilt(): void {
  if (!existsSync(CLI_MAIN)) {
    throw new Error(
      `The end-to-end tests run the built CLI, but ${CLI_MAIN} does not exist. Run \`npm run build\` first (\`npm test\` does it for you).`,
    );
  }
}

export interface CliResult {
  /** Exit code, or null when a signal ended the process. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** PHOTOVAULT_CONFIG_DIR of the client (credentials); required so no test touches the user's. */
  configDir: string;
  /** Written to the process's stdin, which is then closed (it is closed at once without it). */
  stdin?: string | Buffer;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** The process is killed (SIGKILL) and the call fails after this long (times TIME_SCALE). Default 60 s. */
  timeoutMs?: number;
  /** Processes to kill when the test ends, whether it passed or not. */
  tracker?: ProcessTracker;
}

/**
 * The environment of a CLI child: the test's environment without any `PHOTOVAULT_*` variable
 * (they would configure the server or point the client elsewhere), plus PHOTOVAULT_CONFIG_DIR.
 */
export function cliEnv(configDir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('PHOTOVAULT_')) env[key] = value;
  return { ...env, PHOTOVAULT_CONFIG_DIR: configDir, ...extra };
}

/** Processes a test started; `killAll` ends those still running (after a failure, say). */
export class ProcessTracker {
  private readonly running = new Set<ChildProcess>();

  add(child: ChildProcess): void {
    if (isRunning(child)) this.running.add(child);
    child.once('exit', () => this.running.delete(child));
  }

  async killAll(): Promise<void> {
    await Promise.all(
      [...this.running].map(async (child) => {
        child.kill('SIGKILL');
        await exited(child);
      }),
    );
  }
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** Resolves when the process has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (!isRunning(child)) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** Starts `photovault ARGS...`; the caller owns the process (see runCli to wait for a result). */
export function spawnCli(args: string[], options: CliOptions): ChildProcess {
  assertCliBuilt();
  const child = spawn(process.execPath, [CLI_BIN, ...args], {
    cwd: REPO_ROOT,
    env: cliEnv(options.configDir, options.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  options.tracker?.add(child);
  // A child that exits before reading its stdin must not crash the test with EPIPE.
  child.stdin!.on('error', () => {});
  child.stdin!.end(options.stdin);
  return child;
}

/** Collects a child's output as text. */
export function collectOutput(child: ChildProcess): { stdout: () => string; stderr: () => string } {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (piece: Buffer) => out.push(piece));
  child.stderr!.on('data', (piece: Buffer) => err.push(piece));
  return { stdout: () => Buffer.concat(out).toString('utf8'), stderr: () => Buffer.concat(err).toString('utf8') };
}

/** Runs `photovault ARGS...` to completion and returns its exit code and output. */
export async function runCli(args: string[], options: CliOptions): Promise<CliResult> {
  const child = spawnCli(args, options);
  const output = collectOutput(child);
  const timeoutMs = (options.timeoutMs ?? 60_000) * TIME_SCALE;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  // 'close' rather than 'exit': it fires once the output streams are drained too.
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal }));
  }).finally(() => clearTimeout(timer));
  const result = { code, signal, stdout: output.stdout(), stderr: output.stderr() };
  if (timedOut) throw new Error(`photovault ${args.join(' ')} did not finish within ${timeoutMs} ms.\n${describeResult(result)}`);
  return result;
}

/** Runs a command that must succeed and print JSON (`--json`), and returns the parsed JSON. */
export async function runCliJson<T>(args: string[], options: CliOptions): Promise<T> {
  const result = await runCli(args, options);
  if (result.code !== 0)
    throw new Error(`photovault ${args.join(' ')} exited with ${result.code ?? result.signal}.\n${describeResult(result)}`);
  try {
    return JSON.parse(result.stdout) as T;
  } catch {
    throw new Error(`photovault ${args.join(' ')} did not print JSON.\n${describeResult(result)}`);
  }
}

/** The output of a run, for failure messages. */
export function describeResult(result: CliResult): string {
  return `exit: ${result.code ?? result.signal}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
}

export interface CliServer {
  /** Base URL, e.g. http://127.0.0.1:40123. */
  url: string;
  process: ChildProcess;
  /** The server's log (pino JSON lines) and stderr so far, for failure messages. */
  log(): string;
  /** SIGTERM, then waits for the exit (SIGKILL after 15 s, and an error); resolves to how it exited. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `photovault server start --data DIR --host 127.0.0.1 --port 0` (or the given port, to
 * restart a server where its clients expect it) and resolves once it logs that it started, with
 * the URL it logged. The client config dir is a throwaway: the server does
 * not read it, and the child must not see the test machine's PHOTOVAULT_* variables.
 */
export async function startServer(
  dataDir: string,
  options: { port?: number; tracker?: ProcessTracker; timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<CliServer> {
  assertCliBuilt();
  const child = spawnCli(['server', 'start', '--data', dataDir, '--host', '127.0.0.1', '--port', String(options.port ?? 0)], {
    configDir: join(dataDir, '.no-client-config'),
    tracker: options.tracker,
    env: options.env,
  });
  const lines: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (piece: string) => lines.push(piece));
  const log = () => lines.join('\n');

  const timeoutMs = (options.timeoutMs ?? 30_000) * TIME_SCALE;
  let timer: NodeJS.Timeout | undefined;
  try {
    const url = await new Promise<string>((resolve, reject) => {
      timer = setTimeout(
        () => reject(new Error(`The server did not log "photovault server started" within ${timeoutMs} ms.\n${log()}`)),
        timeoutMs,
      );
      child.once('error', reject);
      child.once('exit', (code, signal) => reject(new Error(`The server exited (${code ?? signal}) before it started.\n${log()}`)));
      createInterface({ input: child.stdout! }).on('line', (line) => {
        lines.push(line);
        let entry: { msg?: unknown; url?: unknown };
        try {
          entry = JSON.parse(line) as typeof entry;
        } catch {
          return;
        }
        if (entry.msg === 'photovault server started' && typeof entry.url === 'string') resolve(entry.url);
      });
    });
    return {
      url,
      process: child,
      log,
      async stop() {
        if (!isRunning(child)) return exited(child);
        const exit = exited(child);
        child.kill('SIGTERM');
        let killTimer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<'timeout'>((resolve) => (killTimer = setTimeout(() => resolve('timeout'), 15_000)));
        const outcome = await Promise.race([exit, timedOut]).finally(() => clearTimeout(killTimer));
        if (outcome !== 'timeout') return outcome;
        child.kill('SIGKILL');
        await exit;
        throw new Error(`The server did not exit within 15 s of SIGTERM; it was killed.\n${log()}`);
      },
    };
  } catch (error) {
    child.kill('SIGKILL');
    await exited(child);
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** Options of a sandbox's CLI run: its own client config dir unless another is given. */
export type SandboxCliOptions = Omit<CliOptions, 'configDir' | 'tracker'> & { configDir?: string };

/**
 * What one end-to-end test owns: a temp dir (client config, server data, local files) and the
 * processes it started. `dispose` kills what still runs and removes the dir; call it in afterEach
 * so a failing test cleans up too.
 */
export class CliSandbox {
  readonly tracker = new ProcessTracker();

  private constructor(
    /** Root of everything the test writes. */
    readonly root: string,
    /** The client's PHOTOVAULT_CONFIG_DIR. */
    readonly configDir: string,
    /** In the cluster run, the backends every server, worker and admin command of the sandbox shares. */
    private readonly cluster: ClusterBackends | null,
  ) {}

  static async create(): Promise<CliSandbox> {
    assertCliBuilt();
    const root = await mkdtemp(join(tmpdir(), 'pv-e2e-'));
    const cluster = CLUSTER_BACKENDS ? await createClusterBackends({ withDatabase: true }) : null;
    return new CliSandbox(root, join(root, 'client-config'), cluster);
  }

  /** PHOTOVAULT_* variables naming the cluster backends (none in the embedded run), for processes started apart from run/spawn. */
  get serverEnv(): Record<string, string> {
    return this.cluster?.env ?? {};
  }

  /** A fresh folder inside the sandbox. */
  async dir(name: string): Promise<string> {
    const path = join(this.root, name);
    await mkdir(path, { recursive: true });
    return path;
  }

  /** Runs the CLI as this sandbox's client. */
  run(args: string[], options: SandboxCliOptions = {}): Promise<CliResult> {
    return runCli(args, this.options(options));
  }

  /** Runs the CLI as this sandbox's client; it must succeed and print JSON. */
  json<T>(args: string[], options: SandboxCliOptions = {}): Promise<T> {
    return runCliJson<T>(args, this.options(options));
  }

  /** Starts the CLI as this sandbox's client (or another config dir's) without waiting for it. */
  spawn(args: string[], options: { configDir?: string } = {}): ChildProcess {
    return spawnCli(args, this.options(options));
  }

  /**
   * The sandbox's processes share a runtime dir inside it: the control sockets of its sync
   * daemons (killed ones' too) stay in the temp dir, and `photovault status` sees only them.
   */
  private options(options: SandboxCliOptions): CliOptions {
    return {
      ...options,
      configDir: options.configDir ?? this.configDir,
      env: { ...this.serverEnv, XDG_RUNTIME_DIR: join(this.root, 'run'), ...options.env },
      tracker: this.tracker,
    };
  }

  /**
   * The metadata and the blob store of a data dir, opened the way its server opens them (SQLite
   * and folders, or the cluster run's PostgreSQL and S3), for a test to look into or damage.
   */
  async openBackends(dataDir: string): Promise<{ db: Db; blobs: BlobStore; close(): Promise<void> }> {
    const config = loadServerConfig({ env: this.serverEnv, flags: { dataDir } });
    const db = await openConfiguredDatabase(config);
    const { blobs, staging } = await openConfiguredStorage(config);
    return {
      db,
      blobs,
      close: async () => {
        await staging.close();
        await blobs.close();
        await db.destroy();
      },
    };
  }

  startServer(dataDir: string, options: { port?: number } = {}): Promise<CliServer> {
    return startServer(dataDir, { ...options, tracker: this.tracker, env: this.serverEnv });
  }

  /** `user add NAME` on the data dir, then `login` as that user; fails the test if either fails. */
  async addUserAndLogin(server: CliServer, dataDir: string, user: string, password: string): Promise<void> {
    const added = await this.run(['user', 'add', user, '--password-stdin', '--data', dataDir], { stdin: `${password}\n` });
    if (added.code !== 0) throw new Error(`user add failed.\n${describeResult(added)}`);
    const login = await this.run(['login', '--server', server.url, '--user', user, '--password-stdin', '--device', 'e2e-laptop'], {
      stdin: `${password}\n`,
    });
    if (login.code !== 0) throw new Error(`login failed.\n${describeResult(login)}`);
  }

  async dispose(): Promise<void> {
    await this.tracker.killAll();
    await rm(this.root, { recursive: true, force: true });
    await this.cluster?.drop();
  }
}
