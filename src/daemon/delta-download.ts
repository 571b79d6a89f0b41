import { createHash, type Hash } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { applyDelta } from '../core/delta.js';
import { isPvError, notFoundAsNull, PvError } from '../core/errors.js';
import { decodeManifest, encodeManifest, entryOffsets, type Manifest, MAX_MANIFEST_CHUNKS, manifestSize } from '../core/manifest.js';
import { applyManifestDiff, decodeManifestDiff } from '../core/manifest-diff.js';
import type { VersionManifest } from '../core/protocol.js';
import type { ApiClient } from './api-client.js';
import type { LocalChunk } from './local-chunks.js';
import { tempPathBeside } from './downloader.js';

export interface DeltaDownloadResult {
  contentHash: string;
  versionId: string;
  size: number;
  /** Bytes that came over the network. */
  bytesReceived: number;
  /** Bytes copied from chunks already on this machine. */
  bytesReused: number;
  /** The version's compact manifest, base64, for the local index. */
  manifest: string;
}

/** The version a local file holds unchanged, with its manifest: the base a download can be a patch of. */
export interface DownloadBase {
  versionId: string;
  manifest: Manifest;
}

/**
 * Downloads a file, taking every chunk that exists locally from the local file that holds it
 * and fetching only the rest, runs of adjacent missing chunks as one range read. When the target
 * holds an older version (base), the manifest comes as a diff and changed regions as binary
 * deltas rebuilt from the target's own bytes. Writes a temp file beside the target, checks the
 * whole-content hash, and renames it into place: the target is never half-written. A local chunk
 * whose file changed since it was indexed is fetched instead. A manifest fetched already (with
 * others in one request) saves asking for it; the download is then of exactly that version.
 */
export async function downloadReusingChunks(
  api: ApiClient,
  remotePath: string,
  localPath: string,
  localChunks: Map<string, LocalChunk>,
  options: { version?: string; base?: DownloadBase; manifest?: VersionManifest } = {},
): Promise<DeltaDownloadResult> {
  const { version, manifest, deltas } =
    options.manifest && !options.base ? planOf(options.manifest) : await fetchPlan(api, remotePath, options);
  const sources = options.base ? withBaseChunks(localChunks, options.base.manifest, localPath) : localChunks;
  const temp = tempPathBeside(localPath);
  const out = await open(temp, 'w+', 0o644);
  let bytesReceived = 0;
  let bytesReused = 0;
  try {
    const offsets = entryOffsets(manifest);
    const baseOffsets = options.base ? entryOffsets(options.base.manifest) : [];
    const rebuilt = new Set<number>();
    for (const delta of deltas) {
      const chunks = await rebuildRegion(localPath, baseOffsets, manifest, delta);
      if (!chunks) continue;
      for (const [at, bytes] of chunks) {
        await writeAll(out, bytes, offsets[at]!);
        rebuilt.add(at);
      }
      bytesReceived += delta.delta.length;
    }
    // Then everything local, remembering the gaps; then the gaps, merged into ranges.
    const gaps: { start: number; end: number }[] = [];
    for (const [at, { hash, length }] of manifest.entries()) {
      const offset = offsets[at]!;
      if (rebuilt.has(at)) continue;
      const local = sources.get(hash);
      const bytes = local && (await readVerified(local, hash));
      if (bytes) {
        await writeAll(out, bytes, offset);
        bytesReused += length;
      } else {
        const last = gaps.at(-1);
        if (last && last.end + 1 === offset) last.end += length;
        else gaps.push({ start: offset, end: offset + length - 1 });
      }
    }
    // The whole-content hash takes the bytes in file order: those written before a gap are read
    // back from the temp file, fetched ones are hashed as they arrive. A file fetched whole is
    // never read back.
    const hash = createHash('sha256');
    let hashed = 0;
    for (const gap of gaps) {
      await hashRange(out, hash, hashed, gap.start);
      const { body } = await api.download(remotePath, { version: version.id, range: gap });
      const batch = new WriteBatch(out, gap.start);
      for await (const piece of body as AsyncIterable<Buffer>) {
        hash.update(piece);
        await batch.add(piece);
      }
      const at = await batch.flush();
      bytesReceived += at - gap.start;
      hashed = at;
    }
    await hashRange(out, hash, hashed, version.size);
    const actual = hash.digest('hex');
    if (actual !== version.contentHash) {
      throw new PvError('PV_INTEGRITY', `The bytes assembled for ${remotePath} do not match its content hash; nothing was written.`, {
        fix: 'Download it again; if it keeps failing, run `photovault server verify` on the server.',
      });
    }
    await out.sync();
    await out.close();
    await rename(temp, localPath);
    return {
      contentHash: actual,
      versionId: version.id,
      size: version.size,
      bytesReceived,
      bytesReused,
      manifest: encodeManifest(manifest).toString('base64'),
    };
  } catch (error) {
    await out.close().catch(() => undefined);
    await rm(temp, { force: true });
    throw error;
  }
}

type Handle = Awaited<ReturnType<typeof open>>;

interface RegionDelta {
  start: number;
  count: number;
  baseStart: number;
  baseCount: number;
  delta: Buffer;
}

/** A download plan from a manifest fetched already (POST /files/manifests): no deltas. */
function planOf(fetched: VersionManifest) {
  return {
    version: fetched.version,
    manifest: decodeManifest(Buffer.from(fetched.manifest, 'base64'), MAX_MANIFEST_CHUNKS),
    deltas: [] as RegionDelta[],
  };
}

/** The version to write, its manifest, and the deltas to rebuild changed regions from the base. */
async function fetchPlan(api: ApiClient, remotePath: string, options: { version?: string; base?: DownloadBase }) {
  if (options.base) {
    const { base } = options;
    // null when the server no longer holds the base version: then the whole manifest it is.
    const patch = await api.patch(remotePath, base.versionId, options.version).catch(notFoundAsNull);
    if (patch) {
      const diff = decodeManifestDiff(Buffer.from(patch.manifestDiff, 'base64'), MAX_MANIFEST_CHUNKS);
      return {
        version: patch.version,
        manifest: applyManifestDiff(base.manifest, diff, MAX_MANIFEST_CHUNKS),
        deltas: patch.deltas.map((region): RegionDelta => ({ ...region, delta: Buffer.from(region.delta, 'base64') })),
      };
    }
  }
  const { version, manifest } = await api.manifest(remotePath, options.version);
  return { version, manifest: decodeManifest(Buffer.from(manifest, 'base64'), MAX_MANIFEST_CHUNKS), deltas: [] as RegionDelta[] };
}

/**
 * The chunks of a changed region, each by its manifest index, rebuilt from the base bytes the
 * local file holds; null when the local file no longer holds them or a chunk fails its hash
 * (then those chunks are fetched like any other).
 */
async function rebuildRegion(
  localPath: string,
  baseOffsets: number[],
  manifest: Manifest,
  region: RegionDelta,
): Promise<Map<number, Buffer> | null> {
  const baseStart = baseOffsets[region.baseStart];
  const baseEnd = baseOffsets[region.baseStart + region.baseCount];
  if (baseStart === undefined || baseEnd === undefined) return null;
  const baseBytes = await readRange(localPath, baseStart, baseEnd - baseStart);
  if (!baseBytes) return null;
  const entries = manifest.slice(region.start, region.start + region.count);
  let bytes: Buffer;
  try {
    bytes = applyDelta(baseBytes, region.delta, manifestSize(entries));
  } catch (error) {
    if (isPvError(error, 'PV_DELTA_INVALID')) return null;
    throw error;
  }
  const chunks = new Map<number, Buffer>();
  let at = 0;
  for (const [i, entry] of entries.entries()) {
    const chunk = bytes.subarray(at, at + entry.length);
    if (chunk.length !== entry.length || createHash('sha256').update(chunk).digest('hex') !== entry.hash) return null;
    chunks.set(region.start + i, chunk);
    at += entry.length;
  }
  return chunks;
}

/**
 * The local chunks plus those of the base version, which the target file itself holds. Not a
 * copy of localChunks: a sync of many edited files shares one map of every local chunk.
 */
function withBaseChunks(localChunks: Map<string, LocalChunk>, base: Manifest, file: string): Pick<Map<string, LocalChunk>, 'get'> {
  const baseChunks = new Map<string, LocalChunk>();
  let offset = 0;
  for (const { hash, length } of base) {
    if (!baseChunks.has(hash)) baseChunks.set(hash, { file, offset, length });
    offset += length;
  }
  return { get: (hash) => localChunks.get(hash) ?? baseChunks.get(hash) };
}

/** length bytes of a local file from offset, or null when it is gone or shorter. */
async function readRange(path: string, offset: number, length: number): Promise<Buffer | null> {
  let handle: Handle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  try {
    const bytes = Buffer.alloc(length);
    const { bytesRead } = await handle.read(bytes, 0, length, offset);
    return bytesRead === length ? bytes : null;
  } finally {
    await handle.close();
  }
}

async function writeAll(handle: Handle, bytes: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < bytes.length;) done += (await handle.write(bytes, done, bytes.length - done, position + done)).bytesWritten;
}

/** Bytes a WriteBatch gathers before it writes them. */
const WRITE_BATCH_BYTES = 1024 * 1024;

/**
 * Writes the pieces of a response body, which arrive 16-64 KiB at a time, a megabyte at a time:
 * one pwritev where a photo-sized file took 4-16 writes, each a round trip to the thread pool.
 */
class WriteBatch {
  private pieces: Buffer[] = [];
  private gathered = 0;

  constructor(
    private readonly handle: Handle,
    private position: number,
  ) {}

  async add(piece: Buffer): Promise<void> {
    this.pieces.push(piece);
    this.gathered += piece.length;
    if (this.gathered >= WRITE_BATCH_BYTES) await this.flush();
  }

  /** Writes what is gathered; returns the position after it. */
  async flush(): Promise<number> {
    const pieces = this.pieces;
    const length = this.gathered;
    this.pieces = [];
    this.gathered = 0;
    if (length > 0) {
      const { bytesWritten } = await this.handle.writev(pieces, this.position);
      // A short write (rare for regular files) is finished piece by piece.
      if (bytesWritten < length) await writeAll(this.handle, Buffer.concat(pieces).subarray(bytesWritten), this.position + bytesWritten);
      this.position += length;
    }
    return this.position;
  }
}

/** The chunk's bytes from the local file, or null when the file no longer holds them. */
async function readVerified(chunk: LocalChunk, hash: string): Promise<Buffer | null> {
  const bytes = await readRange(chunk.file, chunk.offset, chunk.length);
  return bytes && createHash('sha256').update(bytes).digest('hex') === hash ? bytes : null;
}

/** Read blocks kept for the next hash: a fresh 4 MiB one per file would have V8 collect garbage all the time. */
const spareBlocks: Buffer[] = [];
const SPARE_BLOCKS_KEPT = 2;

/** Adds the file's bytes from start up to end to the hash. */
async function hashRange(handle: Handle, hash: Hash, start: number, end: number): Promise<void> {
  if (start >= end) return;
  const block = spareBlocks.pop() ?? Buffer.allocUnsafe(4 * 1024 * 1024);
  try {
    for (let position = start; position < end;) {
      const { bytesRead } = await handle.read(block, 0, Math.min(block.length, end - position), position);
      if (bytesRead === 0) break;
      hash.update(block.subarray(0, bytesRead));
      position += bytesRead;
    }
  } finally {
    if (spareBlocks.length < SPARE_BLOCKS_KEPT) spareBlocks.push(block);
  }
}
