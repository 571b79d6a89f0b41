import { createHash, randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { PvError } from '../core/errors.js';
import { decodeManifest, MAX_MANIFEST_CHUNKS } from '../core/manifest.js';
import type { ApiClient } from './api-client.js';
import type { LocalChunk } from './local-chunks.js';
import { PART_SUFFIX } from './downloader.js';

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

/**
 * Downloads a file, taking every chunk that exists locally from the local file that holds it
 * and fetching only the rest, runs of adjacent missing chunks as one range read. Writes a temp
 * file beside the target, checks the whole-content hash, and renames it into place: the target
 * is never half-written. A local chunk whose file changed since it was indexed is fetched instead.
 */
export async function downloadReusingChunks(
  api: ApiClient,
  remotePath: string,
  localPath: string,
  localChunks: Map<string, LocalChunk>,
  options: { version?: string } = {},
): Promise<DeltaDownloadResult> {
  const { version, manifest: encoded } = await api.manifest(remotePath, options.version);
  const manifest = decodeManifest(Buffer.from(encoded, 'base64'), MAX_MANIFEST_CHUNKS);
  const temp = join(dirname(localPath), `.${basename(localPath)}.${randomBytes(6).toString('hex')}${PART_SUFFIX}`);
  const out = await open(temp, 'w+', 0o644);
  let bytesReceived = 0;
  let bytesReused = 0;
  try {
    // First everything local, remembering the gaps; then the gaps, merged into ranges.
    const gaps: { start: number; end: number }[] = [];
    let offset = 0;
    for (const { hash, length } of manifest) {
      const local = localChunks.get(hash);
      const bytes = local && (await readVerified(local, hash));
      if (bytes) {
        await writeAll(out, bytes, offset);
        bytesReused += length;
      } else {
        const last = gaps.at(-1);
        if (last && last.end + 1 === offset) last.end += length;
        else gaps.push({ start: offset, end: offset + length - 1 });
      }
      offset += length;
    }
    for (const gap of gaps) {
      const { body } = await api.download(remotePath, { version: version.id, range: gap });
      let at = gap.start;
      for await (const piece of body as AsyncIterable<Buffer>) {
        await writeAll(out, piece, at);
        at += piece.length;
      }
      bytesReceived += at - gap.start;
    }
    const actual = await hashFile(out, version.size);
    if (actual !== version.contentHash) {
      throw new PvError('PV_INTEGRITY', `The bytes assembled for ${remotePath} do not match its content hash; nothing was written.`, {
        fix: 'Download it again; if it keeps failing, run `photovault server verify` on the server.',
      });
    }
    await out.sync();
    await out.close();
    await rename(temp, localPath);
    return { contentHash: actual, versionId: version.id, size: version.size, bytesReceived, bytesReused, manifest: encoded };
  } catch (error) {
    await out.close().catch(() => undefined);
    await rm(temp, { force: true });
    throw error;
  }
}

type Handle = Awaited<ReturnType<typeof open>>;

async function writeAll(handle: Handle, bytes: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < bytes.length;) done += (await handle.write(bytes, done, bytes.length - done, position + done)).bytesWritten;
}

/** The chunk's bytes from the local file, or null when the file no longer holds them. */
async function readVerified(chunk: LocalChunk, hash: string): Promise<Buffer | null> {
  let handle: Handle;
  try {
    handle = await open(chunk.file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  try {
    const bytes = Buffer.alloc(chunk.length);
    const { bytesRead } = await handle.read(bytes, 0, chunk.length, chunk.offset);
    if (bytesRead !== chunk.length) return null;
    return createHash('sha256').update(bytes).digest('hex') === hash ? bytes : null;
  } finally {
    await handle.close();
  }
}

async function hashFile(handle: Handle, size: number): Promise<string> {
  const hash = createHash('sha256');
  const block = Buffer.allocUnsafe(4 * 1024 * 1024);
  for (let position = 0; position < size;) {
    const { bytesRead } = await handle.read(block, 0, Math.min(block.length, size - position), position);
    if (bytesRead === 0) break;
    hash.update(block.subarray(0, bytesRead));
    position += bytesRead;
  }
  return hash.digest('hex');
}
