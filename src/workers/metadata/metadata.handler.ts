import type { JobHandler } from '../job-handler.js';
import { probeVideo, videoMetadata } from '../transcode/video.probe.js';
import { readImageMetadata } from './image-metadata.reader.js';

/** EXIF/XMP of a photo, or the container tags and streams of a video. */
export const metadataJob: JobHandler<'metadata'> = async ({ mediaKind, source }) =>
  mediaKind === 'video' ? videoMetadata(await probeVideo(source)) : readImageMetadata(source);
