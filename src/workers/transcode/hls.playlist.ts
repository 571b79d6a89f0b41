/**
 * The subset of HLS playlists (RFC 8216) the transcoder writes and reads back: a master playlist
 * of variant streams, and VOD media playlists of MPEG-TS segments. Not a general parser: no
 * encryption keys, byte ranges, discontinuities or alternative renditions.
 */

export interface HlsVariant {
  /** Relative URI of the variant's media playlist. */
  uri: string;
  /** Peak bits per second of any segment, audio included. */
  bandwidth: number;
  averageBandwidth?: number;
  width?: number;
  height?: number;
  /** RFC 6381 codec strings: ["avc1.64001e", "mp4a.40.2"]. */
  codecs?: string[];
  frameRate?: number;
}

export interface HlsSegment {
  uri: string;
  /** #EXTINF duration in seconds. */
  duration: number;
}

export interface HlsMediaPlaylist {
  targetDuration: number;
  /** #EXT-X-PLAYLIST-TYPE, when present ("VOD", "EVENT"). */
  playlistType?: string;
  /** #EXT-X-ENDLIST: no segment will be added. */
  ended: boolean;
  segments: HlsSegment[];
}

/** Parses a master playlist; throws when it is not one (no #EXTM3U, a variant without URI or BANDWIDTH). */
export function parseMasterPlaylist(text: string): HlsVariant[] {
  const lines = playlistLines(text);
  const variants: HlsVariant[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (!line.startsWith('#EXT-X-STREAM-INF:')) continue;
    const attributes = parseAttributes(line.slice('#EXT-X-STREAM-INF:'.length));
    const uri = lines[i + 1];
    if (uri === undefined || uri.startsWith('#')) throw new Error(`invalid master playlist: no URI after ${line}`);
    const bandwidth = Number(attributes.get('BANDWIDTH'));
    if (!Number.isInteger(bandwidth) || bandwidth <= 0) throw new Error(`invalid master playlist: no BANDWIDTH in ${line}`);
    const variant: HlsVariant = { uri, bandwidth };
    const average = Number(attributes.get('AVERAGE-BANDWIDTH'));
    if (Number.isInteger(average) && average > 0) variant.averageBandwidth = average;
    const resolution = /^(\d+)x(\d+)$/.exec(attributes.get('RESOLUTION') ?? '');
    if (resolution) {
      variant.width = Number(resolution[1]);
      variant.height = Number(resolution[2]);
    }
    const codecs = attributes.get('CODECS');
    if (codecs) variant.codecs = codecs.split(',').map((codec) => codec.trim());
    const frameRate = Number(attributes.get('FRAME-RATE'));
    if (frameRate > 0) variant.frameRate = frameRate;
    variants.push(variant);
    i++;
  }
  if (variants.length === 0) throw new Error('invalid master playlist: no #EXT-X-STREAM-INF');
  return variants;
}

/** Parses a media playlist; throws when it is not one (no #EXTM3U or #EXT-X-TARGETDURATION, #EXTINF without URI). */
export function parseMediaPlaylist(text: string): HlsMediaPlaylist {
  const lines = playlistLines(text);
  let targetDuration: number | undefined;
  let playlistType: string | undefined;
  let ended = false;
  const segments: HlsSegment[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.startsWith('#EXT-X-TARGETDURATION:')) targetDuration = Number(line.slice('#EXT-X-TARGETDURATION:'.length));
    else if (line.startsWith('#EXT-X-PLAYLIST-TYPE:')) playlistType = line.slice('#EXT-X-PLAYLIST-TYPE:'.length);
    else if (line === '#EXT-X-ENDLIST') ended = true;
    else if (line.startsWith('#EXTINF:')) {
      const duration = Number(line.slice('#EXTINF:'.length).split(',')[0]);
      const uri = lines[i + 1];
      if (!(duration >= 0) || uri === undefined || uri.startsWith('#')) throw new Error(`invalid media playlist at ${line}`);
      segments.push({ uri, duration });
      i++;
    }
  }
  if (targetDuration === undefined || !Number.isInteger(targetDuration)) {
    throw new Error('invalid media playlist: no #EXT-X-TARGETDURATION');
  }
  const playlist: HlsMediaPlaylist = { targetDuration, ended, segments };
  if (playlistType !== undefined) playlist.playlistType = playlistType;
  return playlist;
}

/** Writes a master playlist, variants in the given order (players start with the first). */
export function formatMasterPlaylist(variants: HlsVariant[]): string {
  const lines = ['#EXTM3U', '#EXT-X-VERSION:3', '#EXT-X-INDEPENDENT-SEGMENTS'];
  for (const variant of variants) {
    const attributes = [`BANDWIDTH=${variant.bandwidth}`];
    if (variant.averageBandwidth !== undefined) attributes.push(`AVERAGE-BANDWIDTH=${variant.averageBandwidth}`);
    if (variant.width !== undefined && variant.height !== undefined) attributes.push(`RESOLUTION=${variant.width}x${variant.height}`);
    if (variant.frameRate !== undefined) attributes.push(`FRAME-RATE=${variant.frameRate.toFixed(3)}`);
    if (variant.codecs?.length) attributes.push(`CODECS="${variant.codecs.join(',')}"`);
    lines.push(`#EXT-X-STREAM-INF:${attributes.join(',')}`, variant.uri);
  }
  return `${lines.join('\n')}\n`;
}

function playlistLines(text: string): string[] {
  const lines = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '');
  if (lines[0] !== '#EXTM3U') throw new Error('invalid playlist: it does not start with #EXTM3U');
  return lines;
}

/** An attribute list: KEY=value,KEY="quoted, may hold commas". Quotes are removed. */
function parseAttributes(list: string): Map<string, string> {
  const attributes = new Map<string, string>();
  for (const match of list.matchAll(/([A-Z0-9-]+)=("[^"]*"|[^,]*)/g)) {
    attributes.set(match[1]!, match[2]!.replace(/^"|"$/g, ''));
  }
  return attributes;
}
