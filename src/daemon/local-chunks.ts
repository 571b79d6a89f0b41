import { join } from 'node:path';
import { decodeManifest, MAX_MANIFEST_CHUNKS } from '../core/manifest.js';
import type { LocalIndex } from './local-index.js';

/** Where a chunk's bytes can be read locally. */
export interface LocalChunk {
  file: string;
  offset: number;
  length: number;
}

/**
 * Every chunk of the files in a synced folder, from the manifests its local index keeps, so a
 * download can take a chunk from any local file (the file's old version, a copy, a renamed
 * file) instead of the network.
 */
export async function localChunksOf(root: string, index: LocalIndex): Promise<Map<string, LocalChunk>> {
  const chunks = new Map<string, LocalChunk>();
  for (const file of (await index.all()).values()) addLocalChunks(chunks, join(root, file.path), file.manifest);
  return chunks;
}

/** Adds the chunks of one local file (absolute path; compact manifest, base64) to such a map. */
export function addLocalChunks(chunks: Map<string, LocalChunk>, file: string, manifest: string): void {
  let offset = 0;
  for (const { hash, length } of decodeManifest(Buffer.from(manifest, 'base64'), MAX_MANIFEST_CHUNKS)) {
    if (!chunks.has(hash)) chunks.set(hash, { file, offset, length });
    offset += length;
  }
}
