/**
 * Syncthing as a benchmark peer: devices on 127.0.0.1 only (no discovery, relays, NAT, usage
 * reporting, crash reports or upgrades), each with a home of its own, driven through its REST API.
 * Written against Debian's syncthing 1.19 (`scripts/setup.sh --bench` installs it); the config
 * overrides are checked against what the running daemon reports, so a version that ignores one
 * fails loudly instead of measuring something else.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { atExit, processCpuSeconds, processRssBytes, runOk } from './support.js';

/** The syncthing binary on PATH, or undefined. */
export function findSyncthing(): string | undefined {
  try {
    return execFileSync('sh', ['-c', 'command -v syncthing'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** A TCP port free on 127.0.0.1 right now (the OS's pick for port 0; someone could take it before we do). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address ? resolvePort(address.port) : reject(new Error('no port'))));
    });
  });
}

/** A shared folder as one device sees it. */
export interface FolderSpec {
  id: string;
  path: string;
  /** fsWatcherDelayS: how long the watcher gathers changes before it scans them (Syncthing's default is 10). */
  watcherDelaySeconds: number;
}

/** The part of GET /rest/db/status the benchmark reads. */
export interface FolderStatus {
  state: string;
  globalFiles: number;
  globalBytes: number;
  localFiles: number;
  localBytes: number;
  needFiles: number;
  needBytes: number;
  needDeletes: number;
  inSyncFiles: number;
  errors: number;
  pullErrors: number;
}

/** Bytes through the device's BEP connections so far (GET /rest/system/connections, `total`). */
export interface WireBytes {
  inBytesTotal: number;
  outBytesTotal: number;
}

/**
 * Everything the benchmark turns off or pins, by config.xml <options> element. setLowPriority is
 * off because Syncthing otherwise renices itself, and the photovault processes it is compared
 * with run at normal priority on the same two cores.
 */
const OPTION_OVERRIDES: Record<string, string> = {
  globalAnnounceEnabled: 'false',
  localAnnounceEnabled: 'false',
  relaysEnabled: 'false',
  natEnabled: 'false',
  urAccepted: '-1',
  crashReportingEnabled: 'false',
  autoUpgradeIntervalH: '0',
  startBrowser: 'false',
  setLowPriority: 'false',
};

const ENV = { ...process.env, STNODEFAULTFOLDER: '1', STNOUPGRADE: '1', STNORESTART: '1' };

/** One Syncthing daemon with a home of its own. */
export class SyncthingDevice {
  private child: ChildProcess | undefined;
  private servingPid: number | undefined;
  private exited: Promise<void> = Promise.resolve();
  private logTail = '';
  private folders: FolderSpec[] = [];
  private peers: SyncthingDevice[] = [];

  private constructor(
    readonly bin: string,
    readonly name: string,
    readonly home: string,
    readonly id: string,
    readonly guiPort: number,
    readonly listenPort: number,
    readonly apiKey: string,
  ) {}

  /** `syncthing generate` into `home`: keys, certificate and a default config, patched by configure(). */
  static async generate(bin: string, name: string, home: string): Promise<SyncthingDevice> {
    await mkdir(home, { recursive: true });
    await runOk(bin, ['generate', '--home', home, '--no-default-folder'], { env: ENV, timeoutSeconds: 60 });
    const id = (await runOk(bin, ['serve', '--home', home, '--device-id'], { env: ENV, timeoutSeconds: 60 })).stdout.trim();
    if (!/^[A-Z2-7]{7}(-[A-Z2-7]{7}){7}$/.test(id)) throw new Error(`syncthing --device-id printed ${JSON.stringify(id)}, not a device ID`);
    return new SyncthingDevice(bin, name, home, id, await freeLoopbackPort(), await freeLoopbackPort(), randomBytes(16).toString('hex'));
  }

  get listenAddress(): string {
    return `tcp://127.0.0.1:${this.listenPort}`;
  }

  /** The process that serves the folders (see start()), while running. */
  get pid(): number | undefined {
    return this.servingPid;
  }

  /**
   * Writes config.xml: the GUI/REST API and the sync protocol on loopback ports of its own, the
   * overrides above, the peers by ID at their static addresses, and the folders, shared with
   * every peer. Takes effect at the next start().
   */
  async configure(folders: FolderSpec[], peers: SyncthingDevice[]): Promise<void> {
    this.folders = folders;
    this.peers = peers;
    const file = join(this.home, 'config.xml');
    let xml = await readFile(file, 'utf8');
    const replace = (pattern: RegExp, replacement: string, what: string) => {
      if (!pattern.test(xml)) throw new Error(`${file}: no ${what} to set (syncthing version not 1.19-like?)`);
      xml = xml.replace(pattern, replacement);
    };

    replace(/(<gui\b[^>]*>[\s\S]*?<address>)[^<]*(<\/address>)/, `$1127.0.0.1:${this.guiPort}$2`, 'gui address');
    replace(/(<gui\b[^>]*>[\s\S]*?<apikey>)[^<]*(<\/apikey>)/, `$1${this.apiKey}$2`, 'gui apikey');
    replace(/<listenAddress>[^<]*<\/listenAddress>/, `<listenAddress>${this.listenAddress}</listenAddress>`, 'listenAddress');
    for (const [option, value] of Object.entries(OPTION_OVERRIDES)) {
      replace(new RegExp(`<${option}>[^<]*</${option}>`), `<${option}>${value}</${option}>`, `<${option}>`);
    }

    // New folders and devices are copies of the <defaults> the generated config carries, so
    // every setting not named here keeps Syncthing's default.
    const defaults = /<defaults>([\s\S]*?)<\/defaults>/.exec(xml)?.[1];
    const defaultFolder = defaults && /<folder\b[\s\S]*?<\/folder>/.exec(defaults)?.[0];
    const defaultDevice = defaults && /\n\s*<device id=""[\s\S]*?<\/device>/.exec(defaults)?.[0];
    if (!defaultFolder || !defaultDevice) throw new Error(`${file}: no <defaults> folder and device to copy`);
    // Sets an attribute of an element's opening tag, adding it if the tag lacks it.
    const attribute = (element: string, key: string, value: string) => {
      const start = element.trimStart();
      const existing = new RegExp(`^(<\\w+\\b[^>]*?\\s${key}=")[^"]*(")`);
      if (existing.test(start)) return start.replace(existing, `$1${escapeXml(value)}$2`);
      return start.replace(/^<\w+/, (tag) => `${tag} ${key}="${escapeXml(value)}"`);
    };
    const members = [this, ...peers]
      .map((device) => `\n            <device id="${device.id}" introducedBy=""><encryptionPassword></encryptionPassword></device>`)
      .join('');
    const folderXml = folders.map((folder) => {
      let element = defaultFolder;
      for (const [key, value] of Object.entries({
        id: folder.id,
        label: folder.id,
        path: folder.path,
        type: 'sendreceive',
        fsWatcherEnabled: 'true',
        fsWatcherDelayS: String(folder.watcherDelaySeconds),
      })) {
        element = attribute(element, key, value);
      }
      // The default folder lists this device alone; the shared one lists every member.
      return `    ${element.replace(/\s*<device id="[^"]*" introducedBy="">[\s\S]*?<\/device>/, members)}\n`;
    });
    const peerXml = peers.map((peer) => {
      let element = attribute(attribute(defaultDevice, 'id', peer.id), 'name', peer.name);
      element = element.replace(/<address>[^<]*<\/address>/, `<address>${peer.listenAddress}</address>`);
      return `    ${element}\n`;
    });
    replace(/(<configuration\b[^>]*>\n)/, `$1${folderXml.join('')}${peerXml.join('')}`, '<configuration>');
    await writeFile(file, xml);
    // Syncthing expects the folder marker in an existing folder root, or it refuses to sync it.
    for (const folder of folders) await mkdir(join(folder.path, '.stfolder'), { recursive: true });
  }

  /** `syncthing serve`, resolving once the REST API answers and the config it loaded is the one written. */
  async start(timeoutSeconds = 60): Promise<void> {
    if (this.child) throw new Error(`syncthing ${this.name} already started`);
    // --no-restart keeps the monitor from restarting the daemon, but 1.19 still runs as two
    // processes: the one spawned here only watches; its child serves (see findServingPid).
    const child = spawn(this.bin, ['serve', '--home', this.home, '--no-browser', '--no-restart', '--no-upgrade', '--logflags=0'], {
      env: ENV,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.exited = new Promise((resolveExit) => child.once('exit', () => resolveExit()));
    atExit(() => child.kill('SIGKILL'));
    const keep = (piece: Buffer) => (this.logTail = (this.logTail + piece.toString('utf8')).slice(-8000));
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    const deadline = performance.now() + timeoutSeconds * 1000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw this.failure(`exited with ${child.exitCode ?? child.signalCode}`);
      try {
        await this.api('GET', '/rest/system/ping');
        break;
      } catch {
        if (performance.now() > deadline) throw this.failure(`REST API not answering after ${timeoutSeconds} s`);
        await sleep(50);
      }
    }
    const servingPid = findServingPid(child.pid!);
    this.servingPid = servingPid;
    if (servingPid !== child.pid) atExit(() => killQuietly(servingPid, 'SIGKILL'));
    await this.checkConfig();
  }

  /** SIGTERM, which Syncthing handles as a clean shutdown (the monitor passes it on); SIGKILL after `graceSeconds`. */
  async stop(graceSeconds = 15): Promise<void> {
    const child = this.child;
    const servingPid = this.servingPid;
    if (!child) return;
    this.child = undefined;
    this.servingPid = undefined;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        if (servingPid !== undefined) killQuietly(servingPid, 'SIGKILL');
      }, graceSeconds * 1000);
      await this.exited;
      clearTimeout(timer);
    }
    // The daemon is the monitor's child, not ours: make sure it went too.
    if (servingPid !== undefined && servingPid !== child.pid) {
      const deadline = performance.now() + graceSeconds * 1000;
      while (isAlive(servingPid) && performance.now() < deadline) await sleep(50);
      killQuietly(servingPid, 'SIGKILL');
    }
  }

  /** A REST call with this device's API key; the parsed JSON answer (undefined for an empty one). */
  async api<T = unknown>(method: 'GET' | 'POST' | 'PATCH', path: string, body?: unknown): Promise<T> {
    const response = await fetch(`http://127.0.0.1:${this.guiPort}${path}`, {
      method,
      headers: { 'X-API-Key': this.apiKey, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`syncthing ${this.name}: ${method} ${path}: ${response.status} ${text.trim()}`);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  folderStatus(folder: string): Promise<FolderStatus> {
    return this.api('GET', `/rest/db/status?folder=${encodeURIComponent(folder)}`);
  }

  /** GET /rest/stats/folder for one folder: when it was last scanned (an RFC 3339 time). */
  async folderStats(folder: string): Promise<{ lastScan: string }> {
    const stats = await this.api<Record<string, { lastScan: string }>>('GET', '/rest/stats/folder');
    const entry = stats[folder];
    if (!entry) throw new Error(`syncthing ${this.name}: no stats for folder ${folder}`);
    return entry;
  }

  /** How complete `device` is on `folder`, in percent, as this device sees it. */
  async completion(folder: string, device: SyncthingDevice): Promise<number> {
    const answer = await this.api<{ completion: number }>(
      'GET',
      `/rest/db/completion?folder=${encodeURIComponent(folder)}&device=${encodeURIComponent(device.id)}`,
    );
    return answer.completion;
  }

  async wireBytes(): Promise<WireBytes> {
    const { total } = await this.api<{ total: WireBytes }>('GET', '/rest/system/connections');
    return { inBytesTotal: total.inBytesTotal, outBytesTotal: total.outBytesTotal };
  }

  async isConnectedTo(peer: SyncthingDevice): Promise<boolean> {
    const { connections } = await this.api<{ connections: Record<string, { connected: boolean }> }>('GET', '/rest/system/connections');
    return connections[peer.id]?.connected === true;
  }

  /** Scans the folder now; Syncthing answers when the scan is over. */
  async scan(folder: string): Promise<void> {
    await this.api('POST', `/rest/db/scan?folder=${encodeURIComponent(folder)}`);
  }

  /** Changes the watcher delay of a folder on the running daemon (Syncthing restarts that folder). */
  async setWatcherDelay(folder: string, seconds: number): Promise<void> {
    await this.api('PATCH', `/rest/config/folders/${encodeURIComponent(folder)}`, { fsWatcherDelayS: seconds });
    const spec = this.folders.find((f) => f.id === folder);
    if (spec) spec.watcherDelaySeconds = seconds;
  }

  /** VmRSS of the daemon, from /proc. */
  rssBytes(): number {
    if (this.servingPid === undefined) throw new Error(`syncthing ${this.name} is not running`);
    return processRssBytes(this.servingPid);
  }

  /** CPU seconds (user + system) the daemon and its monitor have used since they started. */
  cpuSeconds(): number {
    if (this.servingPid === undefined || !this.child?.pid) throw new Error(`syncthing ${this.name} is not running`);
    return processCpuSeconds(this.servingPid) + (this.child.pid === this.servingPid ? 0 : processCpuSeconds(this.child.pid));
  }

  /** Throws unless the running daemon reports the overrides, the folders and the peers configure() wrote. */
  private async checkConfig(): Promise<void> {
    const config = await this.api<{
      options: Record<string, unknown>;
      folders: {
        id: string;
        path: string;
        type: string;
        fsWatcherEnabled: boolean;
        fsWatcherDelayS: number;
        devices: { deviceID: string }[];
      }[];
      devices: { deviceID: string; addresses: string[] }[];
    }>('GET', '/rest/config');
    const wrong: string[] = [];
    for (const [option, value] of Object.entries(OPTION_OVERRIDES)) {
      if (String(config.options[option]) !== value) wrong.push(`${option}=${String(config.options[option])}`);
    }
    if (JSON.stringify(config.options.listenAddresses) !== JSON.stringify([this.listenAddress])) {
      wrong.push(`listenAddresses=${JSON.stringify(config.options.listenAddresses)}`);
    }
    for (const spec of this.folders) {
      const folder = config.folders.find((f) => f.id === spec.id);
      if (!folder || folder.path !== spec.path || folder.type !== 'sendreceive' || !folder.fsWatcherEnabled) {
        wrong.push(`folder ${spec.id}`);
      } else if (folder.fsWatcherDelayS !== spec.watcherDelaySeconds) wrong.push(`fsWatcherDelayS=${folder.fsWatcherDelayS}`);
      else if (this.peers.some((peer) => !folder.devices.some((d) => d.deviceID === peer.id))) wrong.push(`folder ${spec.id} devices`);
    }
    for (const peer of this.peers) {
      const device = config.devices.find((d) => d.deviceID === peer.id);
      if (JSON.stringify(device?.addresses) !== JSON.stringify([peer.listenAddress])) wrong.push(`device ${peer.name} addresses`);
    }
    if (wrong.length > 0) throw this.failure(`runs with a config other than the one written: ${wrong.join(', ')}`);
  }

  private failure(message: string): Error {
    return new Error(`syncthing ${this.name} (${this.home}): ${message}\n${this.logTail.trim().slice(-2000)}`);
  }
}

/** Two devices sharing one folder, each with its own path, both configured but not started. */
export async function syncthingPair(
  bin: string,
  work: string,
  folderId: string,
  paths: [string, string],
  watcherDelaySeconds: number,
): Promise<[SyncthingDevice, SyncthingDevice]> {
  const a = await SyncthingDevice.generate(bin, 'st-a', join(work, 'st-a-home'));
  const b = await SyncthingDevice.generate(bin, 'st-b', join(work, 'st-b-home'));
  await a.configure([{ id: folderId, path: paths[0], watcherDelaySeconds }], [b]);
  await b.configure([{ id: folderId, path: paths[1], watcherDelaySeconds }], [a]);
  return [a, b];
}

/**
 * Resolves once every device has the folder's whole global state and nothing left to do: idle,
 * nothing needed, `files` files locally (when given), all statuses agreeing on the global state.
 */
export async function waitInSync(devices: SyncthingDevice[], folder: string, files?: number, timeoutSeconds = 1800): Promise<void> {
  const deadline = performance.now() + timeoutSeconds * 1000;
  let last: FolderStatus[] = [];
  for (;;) {
    last = await Promise.all(devices.map((device) => device.folderStatus(folder)));
    const done = last.every(
      (s) =>
        s.state === 'idle' &&
        s.needFiles === 0 &&
        s.needBytes === 0 &&
        s.needDeletes === 0 &&
        s.localFiles === s.globalFiles &&
        s.localBytes === s.globalBytes &&
        s.globalFiles === last[0]!.globalFiles &&
        s.globalBytes === last[0]!.globalBytes &&
        (files === undefined || s.localFiles === files),
    );
    if (done) return;
    if (performance.now() > deadline) {
      throw new Error(`syncthing folder ${folder} not in sync after ${timeoutSeconds} s: ${JSON.stringify(last)}`);
    }
    await sleep(50);
  }
}

/** Resolves once `device` is connected to every peer. */
export async function waitConnected(device: SyncthingDevice, peers: SyncthingDevice[], timeoutSeconds = 120): Promise<void> {
  const deadline = performance.now() + timeoutSeconds * 1000;
  for (;;) {
    const states = await Promise.all(peers.map((peer) => device.isConnectedTo(peer)));
    if (states.every(Boolean)) return;
    if (performance.now() > deadline) throw new Error(`syncthing ${device.name}: not connected to its peers after ${timeoutSeconds} s`);
    await sleep(50);
  }
}

/**
 * The syncthing process under `pid` that serves (the monitor's child), or `pid` itself if it has
 * none. Go may fork from any of its threads, so every thread's children list is read.
 */
function findServingPid(pid: number): number {
  const children: number[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      children.push(...readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
    } catch {
      // the thread ended meanwhile
    }
  }
  const serving = children.filter((child) => {
    try {
      return readFileSync(`/proc/${child}/comm`, 'utf8').trim() === 'syncthing';
    } catch {
      return false;
    }
  });
  if (serving.length > 1) throw new Error(`syncthing ${pid} has ${serving.length} syncthing children: ${serving.join(', ')}`);
  return serving[0] ?? pid;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}
