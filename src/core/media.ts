/**
 * What the processing workers derive from a file version (DESIGN section 6), as the files API
 * returns it and the CLI prints it. Shared by server, workers and CLI.
 */

/** Longest edge of each WebP thumbnail, in pixels; never upscaled past the source. */
export const THUMBNAIL_SIZES = [64, 256, 512, 1920] as const;
export type ThumbnailSize = (typeof THUMBNAIL_SIZES)[number];

/** The jobs a version can get; which apply depends on its media kind. */
export const JOB_KINDS = ['thumbnails', 'metadata', 'transcode'] as const;
export type JobKind = (typeof JOB_KINDS)[number];

export type MediaKind = 'image' | 'video';

/** The durable consumer through which the server records every job's outcome. */
export const RESULTS_QUEUE = 'processing-record';

/** The durable consumer (work queue) of each job kind, shared by every worker process that runs it. */
export function jobQueue(job: JobKind): string {
  return `worker-${job}`;
}

/** GPS position in decimal degrees (south and west negative); altitude in metres when known. */
export interface GpsPosition {
  latitude: number;
  longitude: number;
  altitude?: number;
}

/** Metadata read from EXIF, XMP or QuickTime atoms; a field is absent when the file does not say. */
export interface MediaMetadata {
  kind: MediaKind;
  /**
   * When the photo or video was taken, as the camera's local wall-clock time in ISO 8601,
   * with its UTC offset when the file records one ("2008-10-22T16:29:49+02:00"), else without
   * ("2008-10-22T16:29:49"). QuickTime stores UTC, so videos carry "Z" or an offset.
   */
  takenAt?: string;
  /** The offset of takenAt from UTC in minutes, when known. */
  utcOffsetMinutes?: number;
  gps?: GpsPosition;
  make?: string;
  model?: string;
  lens?: string;
  /** Pixel size as displayed, after EXIF orientation or video rotation. */
  width?: number;
  height?: number;
  /** EXIF orientation 1..8 of the stored image. */
  orientation?: number;
  /** Clockwise display rotation of a video in degrees (0, 90, 180, 270). */
  rotation?: number;
  durationSeconds?: number;
  videoCodec?: string;
  audioCodec?: string;
}

export type JobState = 'pending' | 'done' | 'failed';

/** One WebP thumbnail as stored: `size` names the slot, width/height are the real pixels. */
export interface ThumbnailInfo {
  size: ThumbnailSize;
  width: number;
  height: number;
  bytes: number;
}

/** What a thumbnails job derived: four WebP sizes and a thumbhash placeholder (base64). */
export interface ThumbnailsOutput {
  thumbhash: string;
  thumbnails: ThumbnailInfo[];
}

/** What a transcode job derived: an HLS ladder, paths relative to the version's HLS root. */
export interface TranscodeOutput {
  master: string;
  renditions: { height: number; width: number; bandwidth: number; playlist: string }[];
}

export interface JobOutputs {
  thumbnails: ThumbnailsOutput;
  metadata: MediaMetadata;
  transcode: TranscodeOutput;
}

/** A job's outcome, as a worker reports it: done with what it derived, or failed for good. */
export type ProcessingOutcome = {
  [K in JobKind]:
    | { contentHash: string; job: K; mediaKind: MediaKind; attempts: number; state: 'done'; output: JobOutputs[K] }
    | { contentHash: string; job: K; mediaKind: MediaKind; attempts: number; state: 'failed'; error: string };
}[JobKind];

const IMAGE_EXTENSIONS = new Set(['jpg', 'jpeg', 'jpe', 'png', 'webp', 'avif', 'tif', 'tiff', 'gif', 'heic', 'heif', 'hif']);
const VIDEO_EXTENSIONS = new Set([
  'mp4',
  'm4v',
  'mov',
  'qt',
  'mkv',
  'webm',
  'avi',
  '3gp',
  '3g2',
  'mts',
  'm2ts',
  'ts',
  'mpg',
  'mpeg',
  'wmv',
]);

/** Whether a path names a photo or a video, by its extension; null for other files (they get no jobs). */
export function mediaKindOf(path: string): MediaKind | null {
  const dot = path.lastIndexOf('.');
  if (dot < 0 || dot < path.lastIndexOf('/')) return null;
  const extension = path.slice(dot + 1).toLowerCase();
  if (IMAGE_EXTENSIONS.has(extension)) return 'image';
  if (VIDEO_EXTENSIONS.has(extension)) return 'video';
  return null;
}

/** The jobs a photo or a video gets: a video's thumbnails come from its poster frame. */
export function jobsFor(kind: MediaKind): JobKind[] {
  return kind === 'image' ? ['metadata', 'thumbnails'] : ['metadata', 'thumbnails', 'transcode'];
}
