import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PvError } from '../core/errors.js';
import type { ApiClient } from './api-client.js';

/** The suffix of a download's temp file until it is renamed into place; sync never syncs such files. */
export const PART_SUFFIX = '.pvpart';

/** Random per process, and with a count: temp names no other download of this or another process takes (a random name per file cost 35 µs). */
const TEMP_NAME_PREFIX = randomBytes(6).toString('hex');
let tempNames = 0;

/** A fresh temp file name beside localPath, hidden and ending in PART_SUFFIX, to rename into place once complete. */
export function tempPathBeside(localPath: string): string {
  return join(dirname(localPath), `.${basename(localPath)}.${TEMP_NAME_PREFIX}${(++tempNames).toString(36)}${PART_SUFFIX}`);
}

/**
 * Downloads a file to a local path, verifying the content hash while writing to a temp file
 * beside the target and renaming it into place: the target is never half-written or wrong.
 */
export async function downloadFile(
  api: ApiClient,
  remotePath: string,
  localPath: string,
  options: { version?: string } = {},
): Promise<{ bytes: number; contentHash: string }> {
  const { etag, body } = await api.download(remotePath, options);
  const expected = etag.replaceAll('"', '');
  const temp = tempPathBeside(localPath);
  const hash = createHash('sha256');
  let bytes = 0;
  const hashing = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  try {
    await pipeline(body, hashing, createWriteStream(temp, { mode: 0o644 }));
    const actual = hash.digest('hex');
    if (actual !== expected) {
      throw new PvError('PV_INTEGRITY', `The bytes received for ${remotePath} do not match its content hash; nothing was written.`, {
        fix: 'Download it again; if it keeps failing, run `photovault server verify` on the server.',
      });
    }
    await rename(temp, localPath);
    return { bytes, contentHash: actual };
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}
