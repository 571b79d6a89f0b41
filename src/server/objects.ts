/**
 * Where content lives in the blob store. One object per distinct content, named by its hash and
 * fanned out by the first two hex digits so no directory or listing grows too large.
 */

/** Key of the object holding the content with this hash. */
export function objectKey(contentHash: string): string {
  return `content/${contentHash.slice(0, 2)}/${contentHash}`;
}

/** Prefix of the staged chunks of one upload. */
export function stagingPrefix(uploadId: string): string {
  return `staging/${uploadId}/`;
}

/** Key of one staged chunk of an upload, until the commit assembles the object. */
export function stagedChunkKey(uploadId: string, chunkHash: string): string {
  return `${stagingPrefix(uploadId)}${chunkHash}`;
}
