/**
 * Where things live in the blob store, for the server and the workers alike. Everything is
 * named by content hash and fanned out by its first two hex digits, so no directory or listing
 * grows too large.
 */

/** Key of the object holding the content with this hash (in whichever tier bucket holds it). */
export function objectKey(contentHash: string): string {
  return `content/${contentHash.slice(0, 2)}/${contentHash}`;
}

/** Key of one WebP thumbnail of a content, in the `thumbnails` bucket. */
export function thumbnailKey(contentHash: string, size: number): string {
  return `${contentHash.slice(0, 2)}/${contentHash}/${size}.webp`;
}

/** Key of a file of a content's HLS ladder (`file` relative to the ladder's root), in `videos-transcoded`. */
export function hlsKey(contentHash: string, file: string): string {
  return `${contentHash.slice(0, 2)}/${contentHash}/hls/${file}`;
}

/** The content hash an object key names (the inverse of objectKey), or null for any other key. */
export function contentHashOfObjectKey(key: string): string | null {
  return /^content\/([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(key)?.[2] ?? null;
}

/** The content hash a thumbnail or HLS key belongs to, or null for a key of neither form. */
export function contentHashOfDerivedKey(key: string): string | null {
  return /^[0-9a-f]{2}\/([0-9a-f]{64})\//.exec(key)?.[1] ?? null;
}
