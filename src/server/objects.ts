/**
 * Where content lives in the blob store. One object per distinct content, named by its hash and
 * fanned out by the first two hex digits so no directory or listing grows too large.
 */

/** Key of the object holding the content with this hash. */
export function objectKey(contentHash: string): string {
  return `content/${contentHash.slice(0, 2)}/${contentHash}`;
}
