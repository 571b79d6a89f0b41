import { PvError } from './errors.js';
import type { ContentHash } from './hash.js';

/** One entry of a manifest: a chunk of a file version, in file order. */
export interface ManifestEntry {
  hash: ContentHash;
  length: number;
}

/** The ordered chunks of a file version. */
export type Manifest = ManifestEntry[];

/**
 * Compact manifest encoding, used on the wire (base64 inside JSON) and in local indexes:
 * a format byte, then per chunk its 32 raw hash bytes and its length as an unsigned LEB128
 * varint. About 35 bytes a chunk instead of ~90 as JSON.
 */
const FORMAT_V1 = 1;
const HASH_BYTES = 32;

/** Encodes a manifest to its compact binary form. */
export function encodeManifest(manifest: Manifest): Buffer {
  const out = Buffer.allocUnsafe(1 + manifest.length * (HASH_BYTES + 5));
  out[0] = FORMAT_V1;
  let at = 1;
  for (const { hash, length } of manifest) {
    at += out.write(hash, at, HASH_BYTES, 'hex');
    let rest = length;
    while (rest >= 0x80) {
      out[at++] = (rest & 0x7f) | 0x80;
      rest = Math.floor(rest / 0x80);
    }
    out[at++] = rest;
  }
  return out.subarray(0, at);
}

function malformed(reason: string): PvError {
  return new PvError('PV_MANIFEST_INVALID', `Malformed manifest: ${reason}.`, {
    fix: 'Send the manifest as produced by encodeManifest (format 1), base64-encoded.',
  });
}

/** Decodes a compact manifest, refusing more than maxEntries chunks; throws PV_MANIFEST_INVALID or PV_MANIFEST_TOO_LARGE. */
export function decodeManifest(bytes: Uint8Array, maxEntries: number): Manifest {
  if (bytes.length === 0 || bytes[0] !== FORMAT_V1) throw malformed('unknown format byte');
  // Each entry takes at least 33 bytes, so the size bounds the count before any work is done.
  if ((bytes.length - 1) / (HASH_BYTES + 1) > maxEntries + 1) {
    throw new PvError('PV_MANIFEST_TOO_LARGE', `The manifest lists more than ${maxEntries} chunks.`, { maxEntries });
  }
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const manifest: Manifest = [];
  let at = 1;
  while (at < view.length) {
    if (at + HASH_BYTES >= view.length) throw malformed('truncated entry');
    const hash = view.toString('hex', at, at + HASH_BYTES);
    at += HASH_BYTES;
    let length = 0;
    let scale = 1;
    for (;;) {
      if (at >= view.length) throw malformed('truncated length');
      const byte = view[at++]!;
      length += (byte & 0x7f) * scale;
      if (byte < 0x80) break;
      scale *= 0x80;
      if (scale > 2 ** 35) throw malformed('length out of range');
    }
    manifest.push({ hash, length });
    if (manifest.length > maxEntries) {
      throw new PvError('PV_MANIFEST_TOO_LARGE', `The manifest lists more than ${maxEntries} chunks.`, { maxEntries });
    }
  }
  return manifest;
}

/** Total byte length described by a manifest. */
export function manifestSize(manifest: Manifest): number {
  let size = 0;
  for (const entry of manifest) size += entry.length;
  return size;
}

/**
 * Most chunks one manifest may list: 2^20, i.e. 16 GiB even if every chunk were of minimum
 * size and 64 GiB at the average. Bounds the work and memory one request can demand.
 */
export const MAX_MANIFEST_CHUNKS = 1 << 20;
