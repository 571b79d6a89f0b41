/**
 * Dates as EXIF and XMP record them. Nothing here builds a Date in the process's time zone: a
 * taken-at time is the camera's wall-clock, and converting it through the worker's zone would
 * shift it by however far the server is from the camera.
 */

/** A wall-clock date and time as a file records it, with its UTC offset when the file says. */
export interface WallClockTime {
  /** "YYYY-MM-DDTHH:MM:SS", exactly the digits the file holds. */
  local: string;
  /** Fractional seconds, digits only, without trailing zeros. */
  fraction?: string;
  offsetMinutes?: number;
}

// EXIF writes "2008:10:22 16:29:49"; XMP writes ISO 8601 ("2008-10-22T16:29:49.5+02:00") and may
// stop at minutes. A date alone (XMP allows "2008-10-22") is no time of day, so it does not match.
const DATE_TIME = /^(\d{4})[:-](\d{2})[:-](\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?\s*(Z|[+-]\d{2}:?\d{2})?$/;

/** Parses an EXIF or XMP date-time; undefined for blanks, zeros ("0000:00:00 00:00:00") and impossible dates. */
export function parseMetadataDate(value: unknown): WallClockTime | undefined {
  const text = asciiText(value);
  const match = text === undefined ? null : DATE_TIME.exec(text);
  if (!match) return undefined;
  const [, year = '', month = '', day = '', hour = '', minute = '', second = '00', fraction, offset] = match;
  if (!isCalendarDate(Number(year), Number(month), Number(day))) return undefined;
  if (Number(hour) > 23 || Number(minute) > 59 || Number(second) > 59) return undefined;
  const time: WallClockTime = { local: `${year}-${month}-${day}T${hour}:${minute}:${second}` };
  const digits = parseSubSeconds(fraction);
  if (digits !== undefined) time.fraction = digits;
  if (offset !== undefined) {
    const minutes = parseUtcOffset(offset);
    if (minutes === undefined) return undefined;
    time.offsetMinutes = minutes;
  }
  return time;
}

/** Parses an EXIF OffsetTime* value ("+09:00", "-05:00") into minutes east of UTC. */
export function parseUtcOffset(value: unknown): number | undefined {
  const text = asciiText(value);
  if (text === 'Z') return 0;
  const match = text === undefined ? null : /^([+-])(\d{2}):?(\d{2})$/.exec(text);
  if (!match) return undefined;
  const [, sign, hours = '', minutes = ''] = match;
  // Real zones run from UTC-12:00 to UTC+14:00; anything else is a garbled tag.
  if (Number(hours) > 14 || Number(minutes) > 59) return undefined;
  const total = Number(hours) * 60 + Number(minutes);
  return sign === '-' ? -total : total;
}

/** Parses an EXIF SubSecTime* value ("054") into fraction digits; undefined when it adds nothing. */
export function parseSubSeconds(value: unknown): string | undefined {
  const text = typeof value === 'number' ? String(value) : asciiText(value);
  if (text === undefined || !/^\d+$/.test(text)) return undefined;
  const digits = text.replace(/0+$/, '');
  return digits === '' ? undefined : digits;
}

/** ISO 8601 for MediaMetadata.takenAt: the wall-clock, its fraction, and the offset when known. */
export function formatTakenAt(time: WallClockTime): string {
  const fraction = time.fraction === undefined ? '' : `.${time.fraction}`;
  const offset = time.offsetMinutes === undefined ? '' : formatUtcOffset(time.offsetMinutes);
  return `${time.local}${fraction}${offset}`;
}

function formatUtcOffset(minutes: number): string {
  const sign = minutes < 0 ? '-' : '+';
  const magnitude = Math.abs(minutes);
  const hours = String(Math.floor(magnitude / 60)).padStart(2, '0');
  return `${sign}${hours}:${String(magnitude % 60).padStart(2, '0')}`;
}

function isCalendarDate(year: number, month: number, day: number): boolean {
  if (year < 1000 || month < 1 || month > 12 || day < 1) return false;
  // Day 0 of the next month is the last day of this one; UTC so the process's zone plays no part.
  return day <= new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** EXIF ASCII values end at the first NUL, and cameras pad them with spaces. */
function asciiText(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const end = value.indexOf('\0');
  const text = (end === -1 ? value : value.slice(0, end)).trim();
  return text === '' ? undefined : text;
}
