import { PvError } from './errors.js';

/**
 * The framing of many whole files in one body (docs/protocol.md, "Whole files"): uploads of new
 * small files (POST /uploads/files) and downloads of many (POST /files/contents). Each record is
 *
 *   4 bytes   header length n, unsigned big-endian
 *   n bytes   header: a JSON object whose `size` is the length of the content that follows
 *   size bytes content
 *
 * One request then carries dozens of photo-sized files, where each would otherwise cost a
 * request (or two) and its round trips of its own.
 */
export const FILE_RECORDS_TYPE = 'application/vnd.photovault.files';

/** A record's header must say how many content bytes follow it. */
export interface RecordHeader {
  size: number;
}

/** One record as read: its header and its content, as the pieces it arrived in (no copy). */
export interface FileRecord<H extends RecordHeader> {
  header: H;
  pieces: Buffer[];
}

export interface RecordLimits {
  /** Records a body may hold. */
  records: number;
  /** Content bytes one record may hold. */
  recordBytes: number;
  /** Content bytes all records together may hold. */
  totalBytes?: number;
}

/** Header bytes of a record at most: a manifest of the largest file sent whole is far smaller. */
export const RECORD_HEADER_MAX_BYTES = 256 * 1024;

/** The framing that goes before a record's content. */
export function recordHeader(header: RecordHeader): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const framed = Buffer.allocUnsafe(4 + json.length);
  framed.writeUInt32BE(json.length, 0);
  json.copy(framed, 4);
  return framed;
}

/**
 * Reads the records of a body as they complete. A malformed header, a record past the limits or a
 * body that ends inside a record throws PV_INVALID_INPUT (records before it were yielded).
 */
export async function* readFileRecords<H extends RecordHeader>(
  body: AsyncIterable<Uint8Array>,
  limits: RecordLimits,
): AsyncGenerator<FileRecord<H>> {
  // Bytes received and not yet taken, as pieces; framing is read across piece boundaries.
  const pending: Buffer[] = [];
  let pendingBytes = 0;
  // Whole pieces taken leave in one splice, and a peek copies only the pieces it needs: a body
  // arriving in tiny pieces costs time in proportion to its pieces, not their square.
  const take = (n: number): Buffer[] => {
    const taken: Buffer[] = [];
    let whole = 0;
    for (; n > 0; whole++) {
      const piece = pending[whole]!;
      if (piece.length > n) {
        taken.push(piece.subarray(0, n));
        pending[whole] = piece.subarray(n);
        pendingBytes -= n;
        break;
      }
      taken.push(piece);
      n -= piece.length;
      pendingBytes -= piece.length;
    }
    pending.splice(0, whole);
    return taken;
  };
  const peek = (n: number): Buffer => {
    const covering: Buffer[] = [];
    for (let bytes = 0; bytes < n; bytes += covering.at(-1)!.length) covering.push(pending[covering.length]!);
    return covering.length === 1 ? covering[0]! : Buffer.concat(covering).subarray(0, n);
  };
  let header: H | null = null;
  let records = 0;
  let total = 0;
  for await (const piece of body) {
    pending.push(Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.length));
    pendingBytes += piece.length;
    for (;;) {
      if (header === null) {
        if (pendingBytes < 4) break;
        const length = peek(4).readUInt32BE(0);
        if (length > RECORD_HEADER_MAX_BYTES)
          throw invalid(`A record header of ${length} bytes is larger than ${RECORD_HEADER_MAX_BYTES}.`);
        if (pendingBytes < 4 + length) break;
        take(4);
        header = parseHeader<H>(Buffer.concat(take(length), length), limits, ++records);
        total += header.size;
        if (limits.totalBytes !== undefined && total > limits.totalBytes)
          throw invalid(`The records hold more than ${limits.totalBytes} bytes together.`);
      }
      if (pendingBytes < header.size) break;
      yield { header, pieces: take(header.size) };
      header = null;
    }
  }
  if (header !== null || pendingBytes > 0) throw invalid('The body ends inside a record.');
}

/**
 * The content of a record as one buffer: its pieces copied into target (at least as long as the
 * content), or without one the piece it arrived in or a new buffer joining its pieces.
 */
export function recordContent(record: FileRecord<RecordHeader>, target?: Buffer): Buffer {
  const { pieces, header } = record;
  if (!target) return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, header.size);
  let at = 0;
  for (const piece of pieces) at += piece.copy(target, at);
  return target.subarray(0, header.size);
}

function parseHeader<H extends RecordHeader>(json: Buffer, limits: RecordLimits, ordinal: number): H {
  if (ordinal > limits.records) throw invalid(`A body holds at most ${limits.records} records.`);
  let header: unknown;
  try {
    header = JSON.parse(json.toString('utf8'));
  } catch {
    throw invalid(`Record ${ordinal} has a header that is not JSON.`);
  }
  const size = (header as Partial<RecordHeader> | null)?.size;
  if (typeof header !== 'object' || header === null || !Number.isSafeInteger(size) || size! < 0) {
    throw invalid(`Record ${ordinal} has a header without a byte count (size).`);
  }
  if (size! > limits.recordBytes) throw invalid(`Record ${ordinal} holds ${size} bytes; a record holds at most ${limits.recordBytes}.`);
  return header as H;
}

function invalid(message: string): PvError {
  return new PvError('PV_INVALID_INPUT', message, { fix: 'Frame each file as docs/protocol.md says under "Whole files".' });
}
