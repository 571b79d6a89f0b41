import type { JobHandlers } from './job-handler.js';
import { metadataJob } from './metadata/metadata.handler.js';
import { thumbnailsJob } from './thumbnails/thumbnails.handler.js';
import { transcodeJob } from './transcode/transcode.handler.js';

/** The handler of each job kind. */
export const JOB_HANDLERS: JobHandlers = {
  metadata: metadataJob,
  thumbnails: thumbnailsJob,
  transcode: transcodeJob,
};
