import { computeSignature, encodeDelta, encodeSignature, MAX_SIGNED_BYTES, signatureBlockSize } from '../../core/delta.js';
import { PvError } from '../../core/errors.js';
import { entryOffsets, type Manifest } from '../../core/manifest.js';
import { changedRegions, diffManifests, encodeManifestDiff, type ManifestDiff } from '../../core/manifest-diff.js';
import type { FileVersionView, UploadStatus, VersionPatch } from '../../core/protocol.js';
import type { BlobStore } from '../../infra/blobs/blob-store.js';
import type { FileVersionRow } from '../../infra/db/schema.js';
import { openObject } from '../../infra/blobs/object-reader.js';
import type { FilesRepository } from './files.repository.js';

export type DeltaBase = NonNullable<UploadStatus['deltaBases']>[number];

/** A replaced region's base is worth a delta up to this size; larger ones are rewrites. */
const MAX_REGION_BASE = 1024 * 1024;
/** Block size of deltas the server makes itself: its signature never travels, so small blocks pay. */
const SERVER_BLOCK = 64;

/**
 * What makes a changed version cheap to move: its manifest as a diff against an older version's,
 * and its changed regions as binary deltas against the bytes they replaced (docs/protocol.md).
 * Uploads use it to offer signatures of replaced regions; downloads to build a patch.
 */
export class VersionDeltas {
  constructor(
    private readonly files: FilesRepository,
    private readonly blobs: BlobStore,
  ) {}

  /** A version of the user's (any file, as a local copy may have moved) and its manifest; PV_NOT_FOUND otherwise. */
  async baseOf(ownerId: string, versionId: string): Promise<{ version: FileVersionRow; manifest: Manifest }> {
    const version = await this.files.findVersion(ownerId, versionId);
    if (!version) {
      throw new PvError('PV_NOT_FOUND', `No version ${versionId} to diff against.`, {
        fix: 'Send the whole manifest (and the whole file) instead.',
      });
    }
    return { version, manifest: await this.files.manifestOf(version.content_hash) };
  }

  /**
   * For the missing chunks of an upload based on an older version: per changed region, the chunks
   * it replaced and their signature, so the client can send the new chunks as deltas against them.
   */
  async deltaBases(base: { version: FileVersionRow; manifest: Manifest }, manifest: Manifest, missing: Set<string>): Promise<DeltaBase[]> {
    const baseOffsets = entryOffsets(base.manifest);
    const bases: DeltaBase[] = [];
    for (const region of this.regions(diffManifests(base.manifest, manifest), baseOffsets)) {
      const chunks = [...new Set(manifest.slice(region.start, region.start + region.count).map((entry) => entry.hash))].filter((hash) =>
        missing.has(hash),
      );
      if (chunks.length === 0) continue;
      const bytes = await this.readEntries(base.version.content_hash, baseOffsets, region.baseStart, region.baseCount);
      bases.push({
        chunks,
        base: base.manifest.slice(region.baseStart, region.baseStart + region.baseCount).map((entry) => entry.hash),
        signature: encodeSignature(computeSignature(bytes, signatureBlockSize(bytes.length))).toString('base64'),
      });
    }
    return bases;
  }

  /**
   * A version as a patch of an older one: its manifest as a diff, and each changed region whose
   * delta is smaller than its bytes as that delta. Chunks outside the deltas the client takes from
   * its copy of the base or fetches by range.
   */
  async patch(base: { version: FileVersionRow; manifest: Manifest }, version: FileVersionView): Promise<VersionPatch> {
    const manifest = await this.files.manifestOf(version.contentHash);
    const diff = diffManifests(base.manifest, manifest);
    const baseOffsets = entryOffsets(base.manifest);
    const offsets = entryOffsets(manifest);
    const deltas: VersionPatch['deltas'] = [];
    for (const region of this.regions(diff, baseOffsets)) {
      const targetBytes = offsets[region.start + region.count]! - offsets[region.start]!;
      if (targetBytes > MAX_SIGNED_BYTES) continue;
      const baseBytes = await this.readEntries(base.version.content_hash, baseOffsets, region.baseStart, region.baseCount);
      const target = await this.readEntries(version.contentHash, offsets, region.start, region.count);
      const delta = encodeDelta(target, computeSignature(baseBytes, SERVER_BLOCK));
      if (delta.length < targetBytes) deltas.push({ ...region, delta: delta.toString('base64') });
    }
    return { version, manifestDiff: encodeManifestDiff(diff).toString('base64'), deltas };
  }

  /** The changed regions that replaced some base bytes, but not so many that it is a rewrite. */
  private regions(diff: ManifestDiff, baseOffsets: number[]) {
    return changedRegions(diff, baseOffsets.length - 1).filter(
      (region) =>
        region.baseCount > 0 && baseOffsets[region.baseStart + region.baseCount]! - baseOffsets[region.baseStart]! <= MAX_REGION_BASE,
    );
  }

  /** The bytes of entries [start, start + count) of stored content, given where its entries start. */
  private async readEntries(contentHash: string, offsets: number[], start: number, count: number): Promise<Buffer> {
    const offset = offsets[start]!;
    const length = offsets[start + count]! - offset;
    return readAll(await openObject(this.blobs, this.files, contentHash, { range: { start: offset, end: offset + length - 1 } }), length);
  }
}

/** Reads a stream of known length into one buffer. */
export async function readAll(stream: AsyncIterable<Uint8Array>, length: number): Promise<Buffer> {
  const out = Buffer.allocUnsafe(length);
  let at = 0;
  for await (const piece of stream) {
    if (at + piece.length > length) throw new PvError('PV_INTEGRITY', 'A stored object holds more bytes than its index says.');
    out.set(piece, at);
    at += piece.length;
  }
  if (at !== length) throw new PvError('PV_INTEGRITY', 'A stored object holds fewer bytes than its index says.');
  return out;
}
