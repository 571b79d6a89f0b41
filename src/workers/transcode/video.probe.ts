/**
 * What ffprobe says about a video file: the numbers the transcoder and the poster frame need
 * (size, rotation, duration, codecs) and the QuickTime/MP4 tags the metadata job keeps (when, where,
 * which camera).
 */
import { stat } from 'node:fs/promises';
import type { FfprobeData, FfprobeStream } from 'fluent-ffmpeg';
import type { GpsPosition, MediaMetadata } from '../../core/media.js';
import { UnprocessableMediaError } from '../unprocessable-media.error.js';
import { ffprobe } from './ffmpeg.process.js';

export type VideoRotation = 0 | 90 | 180 | 270;

export interface VideoProbe {
  /** Seconds, as players show it: the container's duration, else the video stream's. */
  durationSeconds: number;
  /** The video stream's own duration when the container states it (audio may run longer). */
  videoDurationSeconds?: number;
  /** Size of the stored frames, before rotation (ffprobe's width/height, not its macroblock-aligned coded_width). */
  codedWidth: number;
  codedHeight: number;
  /** Clockwise rotation a player applies for display. */
  rotation: VideoRotation;
  /** Size as displayed: non-square pixels stretched to square, then rotated (swapped for 90 and 270). */
  width: number;
  height: number;
  /** Index among all the file's streams (ffmpeg's "0:N") of the video stream described here. */
  videoStream: number;
  /** Index of the first audio stream, when there is one. */
  audioStream?: number;
  /** ffmpeg's codec names: "h264", "hevc", "aac", ... */
  videoCodec: string;
  audioCodec?: string;
  audioChannels?: number;
  /** Average frames per second. */
  frameRate?: number;
  /** Bits per second of the whole file. */
  bitRate?: number;
  /** Fields rather than frames (camcorder AVCHD): the transcoder deinterlaces. */
  interlaced: boolean;
  /** QuickTime creation_time: the instant of recording in UTC ("2019-05-12T12:03:22Z"). */
  creationTime?: string;
  /** Apple's com.apple.quicktime.creationdate: the local wall-clock time with its offset ("2019-05-12T14:03:22+02:00"). */
  localCreationDate?: string;
  location?: GpsPosition;
  make?: string;
  model?: string;
}

/**
 * Probes a video file. Rejects with UnprocessableMediaError (ffprobe's reason) when the file is
 * not a video or ffprobe cannot read it; with the fs error when the file does not exist; with
 * PV_MEDIA_DECODER_MISSING when ffprobe is not installed.
 */
export async function probeVideo(path: string): Promise<VideoProbe> {
  // A missing file is the caller's problem, not the media's: it must not be marked unprocessable.
  await stat(path);
  return videoProbeFromFfprobe(await ffprobe(path));
}

/** The mapping of ffprobe's output (as fluent-ffmpeg parses it) to a VideoProbe. */
export function videoProbeFromFfprobe(data: FfprobeData): VideoProbe {
  const format = data.format;
  if (IMAGE_FORMAT.test(format.format_name ?? '')) {
    throw new UnprocessableMediaError(`not a video: ${format.format_name} is an image format`);
  }
  // Cover art in an audio file is a video stream too, of one picture.
  const video = data.streams.find((s) => s.codec_type === 'video' && Number(s.disposition?.attached_pic ?? 0) !== 1);
  if (!video) throw new UnprocessableMediaError(`not a video: no video stream in ${format.format_name ?? 'the file'}`);
  const audio = data.streams.find((s) => s.codec_type === 'audio');

  const videoDuration = positive(video.duration);
  const durationSeconds = positive(format.duration) ?? videoDuration;
  if (durationSeconds === undefined) throw new UnprocessableMediaError('not a video: it has no duration');
  const codedWidth = positive(video.width);
  const codedHeight = positive(video.height);
  if (codedWidth === undefined || codedHeight === undefined) {
    throw new UnprocessableMediaError(`the video stream has no frame size (codec ${video.codec_name ?? 'unknown'})`);
  }

  const rotation = displayRotation(video);
  const squareWidth = Math.max(1, Math.round(codedWidth * sampleAspectRatio(video)));
  const sideways = rotation === 90 || rotation === 270;
  const formatTags = tags(format.tags);
  const streamTags = tags(video.tags);
  const tag = (...names: string[]) => {
    for (const name of names) {
      const value = formatTags.get(name) ?? streamTags.get(name);
      if (value !== undefined && value.trim() !== '') return value.trim();
    }
    return undefined;
  };

  const probe: VideoProbe = {
    durationSeconds,
    codedWidth,
    codedHeight,
    rotation,
    width: sideways ? codedHeight : squareWidth,
    height: sideways ? squareWidth : codedHeight,
    videoStream: video.index,
    videoCodec: String(video.codec_name ?? 'unknown'),
    interlaced: isInterlaced(video.field_order),
  };
  if (videoDuration !== undefined) probe.videoDurationSeconds = videoDuration;
  if (audio) probe.audioStream = audio.index;
  if (audio?.codec_name) probe.audioCodec = String(audio.codec_name);
  const channels = positive(audio?.channels);
  if (channels !== undefined) probe.audioChannels = channels;
  const frameRate = rational(video.avg_frame_rate) ?? rational(video.r_frame_rate);
  if (frameRate !== undefined) probe.frameRate = frameRate;
  const bitRate = positive(format.bit_rate);
  if (bitRate !== undefined) probe.bitRate = bitRate;
  const creationTime = utcInstant(tag('creation_time'));
  if (creationTime) probe.creationTime = creationTime;
  const localCreationDate = localDateTime(tag('com.apple.quicktime.creationdate'));
  if (localCreationDate) probe.localCreationDate = localCreationDate;
  const location = parseIso6709(tag('com.apple.quicktime.location.ISO6709', 'location', 'location-eng'));
  if (location) probe.location = location;
  const make = tag('com.apple.quicktime.make', 'com.android.manufacturer', 'make');
  if (make) probe.make = make;
  const model = tag('com.apple.quicktime.model', 'com.android.model', 'model');
  if (model) probe.model = model;
  return probe;
}

/** The metadata job's view of a probed video. */
export function videoMetadata(probe: VideoProbe): MediaMetadata {
  const metadata: MediaMetadata = {
    kind: 'video',
    width: probe.width,
    height: probe.height,
    rotation: probe.rotation,
    durationSeconds: probe.durationSeconds,
    videoCodec: probe.videoCodec,
  };
  if (probe.localCreationDate) {
    metadata.takenAt = probe.localCreationDate;
    metadata.utcOffsetMinutes = offsetMinutes(probe.localCreationDate);
  } else if (probe.creationTime) {
    // An instant in UTC: the camera's own offset is unknown, so utcOffsetMinutes stays absent.
    metadata.takenAt = probe.creationTime;
  }
  if (probe.location) metadata.gps = probe.location;
  if (probe.make) metadata.make = probe.make;
  if (probe.model) metadata.model = probe.model;
  if (probe.audioCodec) metadata.audioCodec = probe.audioCodec;
  return metadata;
}

// ---------------------------------------------------------------------------------------------
// ffprobe's fields. fluent-ffmpeg parses ffprobe's default (ini-like) output: numbers such as
// "1920" become numbers, everything else ("-90", "24/1", "N/A") stays a string.

/** Still-image demuxers: ffprobe opens a JPEG or PNG as a one-frame "video". */
const IMAGE_FORMAT = /^(image2|[a-z0-9]+_pipe)$/;

function positive(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : NaN;
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

/** "30000/1001" -> 29.97; "0/0" and "N/A" -> undefined. */
function rational(value: unknown): number | undefined {
  if (typeof value === 'number') return positive(value);
  const match = /^(\d+)\/(\d+)$/.exec(String(value ?? ''));
  if (!match) return undefined;
  return positive(Number(match[1]) / Number(match[2]));
}

/** Width stretch of one pixel: "64:45" (anamorphic DV) -> 1.42; unknown ("0:1", "N/A") -> 1. */
function sampleAspectRatio(stream: FfprobeStream): number {
  const match = /^(\d+):(\d+)$/.exec(String(stream.sample_aspect_ratio ?? ''));
  const ratio = match ? Number(match[1]) / Number(match[2]) : NaN;
  return Number.isFinite(ratio) && ratio > 0 ? ratio : 1;
}

/**
 * Clockwise display rotation. ffprobe prints the display matrix's angle counterclockwise
 * ("rotation=-90" for a phone held upright), older files and ffmpeg versions a clockwise "rotate"
 * tag ("90"); either is snapped to a quarter turn.
 */
function displayRotation(stream: FfprobeStream): VideoRotation {
  // The side data's fields land on the stream object itself (fluent-ffmpeg flattens sub-sections).
  const matrix = Number((stream as { rotation?: unknown }).rotation);
  const tag = Number(tags(stream.tags).get('rotate'));
  const clockwise = Number.isFinite(matrix) ? -matrix : Number.isFinite(tag) ? tag : 0;
  const quarter = (((Math.round(clockwise / 90) % 4) + 4) % 4) as 0 | 1 | 2 | 3;
  return ([0, 90, 180, 270] as const)[quarter];
}

function isInterlaced(fieldOrder: unknown): boolean {
  return typeof fieldOrder === 'string' && ['tt', 'bb', 'tb', 'bt'].includes(fieldOrder);
}

function tags(raw: Record<string, string | number> | undefined): Map<string, string> {
  return new Map(Object.entries(raw ?? {}).map(([key, value]) => [key, String(value)]));
}

// ---------------------------------------------------------------------------------------------
// Tag values.

/** ffprobe's creation_time ("2019-05-12T12:03:22.000000Z") as whole seconds in UTC; unset clocks (before 1971) dropped. */
function utcInstant(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const time = Date.parse(value);
  if (!Number.isFinite(time) || time < Date.UTC(1971, 0, 1)) return undefined;
  return new Date(time).toISOString().replace(/\.\d+Z$/, 'Z');
}

/** Apple's creationdate ("2019-05-12T14:03:22+0200") normalised to ISO 8601 with a colon in the offset. */
function localDateTime(value: string | undefined): string | undefined {
  const match = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?(?:(Z)|([+-])(\d{2}):?(\d{2}))$/.exec(value ?? '');
  if (!match) return undefined;
  const [, date, time, zulu, sign, hours, minutes] = match;
  return `${date}T${time}${zulu ? '+00:00' : `${sign}${hours}:${minutes}`}`;
}

function offsetMinutes(isoWithOffset: string): number {
  const match = /([+-])(\d{2}):(\d{2})$/.exec(isoWithOffset);
  if (!match) return 0;
  const minutes = Number(match[2]) * 60 + Number(match[3]);
  return match[1] === '-' ? -minutes : minutes;
}

/**
 * An ISO 6709 point as QuickTime stores it: "+37.7858-122.4064+010.000/" (latitude, longitude,
 * optional altitude in metres). Degrees may also be written DDMM.mmm or DDMMSS.ss, told apart by
 * the number of integer digits. The point 0,0 is what some phones write without a fix: dropped.
 */
export function parseIso6709(value: string | undefined): GpsPosition | undefined {
  const match = /^([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)?(?:CRS[^/]*)?\/?$/.exec(value?.trim() ?? '');
  if (!match) return undefined;
  const latitude = sexagesimal(match[1]!, 2);
  const longitude = sexagesimal(match[2]!, 3);
  if (latitude === undefined || longitude === undefined) return undefined;
  if (Math.abs(latitude) > 90 || Math.abs(longitude) > 180 || (latitude === 0 && longitude === 0)) return undefined;
  const position: GpsPosition = { latitude, longitude };
  if (match[3] !== undefined) position.altitude = Number(match[3]);
  return position;
}

/** "+3747.148" with 2 degree digits -> 37.7858; D, DM and DMS forms. */
function sexagesimal(field: string, degreeDigits: number): number | undefined {
  const sign = field.startsWith('-') ? -1 : 1;
  const [integer = '', fraction = ''] = field.slice(1).split('.');
  const value = Number(`${integer}.${fraction || '0'}`);
  let degrees: number;
  if (integer.length === degreeDigits) degrees = value;
  else if (integer.length === degreeDigits + 2) degrees = Math.trunc(value / 100) + (value % 100) / 60;
  else if (integer.length === degreeDigits + 4) {
    degrees = Math.trunc(value / 10000) + (Math.trunc(value / 100) % 100) / 60 + (value % 100) / 3600;
  } else return undefined;
  return sign * degrees;
}
