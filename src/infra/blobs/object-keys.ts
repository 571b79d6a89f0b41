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
