import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { hlsKey } from '../../infra/blobs/object-keys.js';
import type { JobHandler } from '../job-handler.js';
import { transcodeHls } from './hls.transcoder.js';
import { probeVideo } from './video.probe.js';

/** The HLS ladder of a video, stored under the content's hls/ prefix. */
export const transcodeJob: JobHandler<'transcode'> = async ({ contentHash, source, workDir, blobs, signal }) => {
  const outDir = join(workDir, 'hls');
  const ladder = await transcodeHls(source, outDir, await probeVideo(source), { signal });
  // Segments first, playlists after, the master last: a player never finds a playlist whose
  // segments are not stored yet.
  const order = (file: string) => (file === ladder.master ? 2 : file.endsWith('.m3u8') ? 1 : 0);
  for (const file of [...ladder.files].sort((a, b) => order(a) - order(b))) {
    await blobs.put('videos-transcoded', hlsKey(contentHash, file), createReadStream(join(outDir, file)));
  }
  return {
    master: ladder.master,
    renditions: ladder.renditions.map(({ height, width, bandwidth, playlist }) => ({ height, width, bandwidth, playlist })),
  };
};
