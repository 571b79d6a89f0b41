import { Readable } from 'node:stream';
import { thumbnailKey } from '../../infra/blobs/object-keys.js';
import type { JobHandler } from '../job-handler.js';
import { extractPosterFrame } from '../transcode/poster.frame.js';
import { probeVideo } from '../transcode/video.probe.js';
import { renderThumbnails } from './thumbnail.renderer.js';

/** Four WebP sizes and a thumbhash, from the photo itself or from a video's poster frame. */
export const thumbnailsJob: JobHandler<'thumbnails'> = async ({ contentHash, mediaKind, source, blobs }) => {
  const image = mediaKind === 'video' ? await extractPosterFrame(source, await probeVideo(source)) : source;
  const set = await renderThumbnails(image);
  for (const thumbnail of set.thumbnails) {
    await blobs.put('thumbnails', thumbnailKey(contentHash, thumbnail.size), Readable.from([thumbnail.webp]), {
      size: thumbnail.webp.length,
    });
  }
  return {
    thumbhash: set.thumbhash,
    thumbnails: set.thumbnails.map(({ size, width, height, webp }) => ({ size, width, height, bytes: webp.length })),
  };
};
