import { describe, expect, it } from 'vitest';
import { RECORD_HEADER_MAX_BYTES, readFileRecords, recordContent, recordHeader, type RecordLimits } from '../../src/core/file-records.js';
import { pseudoRandomBytes } from '../support/random.js';

interface NamedHeader {
  name: string;
  size: number;
}

const LIMITS: RecordLimits = { records: 8, recordBytes: 100_000 };

/** A body of records, framed as a sender frames them. */
function framed(files: [string, Buffer][]): Buffer {
  return Buffer.concat(files.flatMap(([name, content]) => [recordHeader({ name, size: content.length } as NamedHeader), content]));
}

/** The body as pieces of the given sizes, in turn (the last size repeats). */
async function* inPieces(body: Buffer, sizes: number[]): AsyncGenerator<Uint8Array> {
  for (let at = 0, turn = 0; at < body.length; turn++) {
    const size = sizes[Math.min(turn, sizes.length - 1)]!;
    yield body.subarray(at, at + size);
    at += size;
  }
}

async function read(pieces: AsyncIterable<Uint8Array>, limits = LIMITS): Promise<[string, Buffer][]> {
  const records: [string, Buffer][] = [];
  for await (const record of readFileRecords<NamedHeader>(pieces, limits)) records.push([record.header.name, recordContent(record)]);
  return records;
}

/** A body whose first record header is this JSON, with no content after it. */
function withHeaderJson(json: string): Buffer {
  const bytes = Buffer.from(json);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

describe('readFileRecords', () => {
  const files: [string, Buffer][] = [
    ['photo.jpg', pseudoRandomBytes(70_000, 1)],
    ['empty.txt', Buffer.alloc(0)],
    ['note.txt', Buffer.from('a note')],
    ['last-empty', Buffer.alloc(0)],
  ];
  const body = framed(files);

  it.each([
    ['one piece', [body.length]],
    ['one byte at a time', [1]],
    ['two bytes at a time', [2]],
    ['three bytes, then seven at a time', [3, 7]],
    ['a piece ending inside the length prefix, then large ones', [2, 65_536]],
    ['4 KiB pieces', [4096]],
  ])('reads records split across piece boundaries: %s', async (_name, sizes) => {
    expect(await read(inPieces(body, sizes))).toEqual(files);
  });

  it('reads nothing from an empty body', async () => {
    expect(await read(inPieces(Buffer.alloc(0), [1]))).toEqual([]);
  });

  it('yields a record as soon as its content is complete, before the next one arrives', async () => {
    const seen: string[] = [];
    async function* slowly(): AsyncGenerator<Uint8Array> {
      yield framed([files[2]!]);
      seen.push('sent the first');
      yield framed([files[0]!]);
    }
    for await (const record of readFileRecords<NamedHeader>(slowly(), LIMITS)) seen.push(record.header.name);
    expect(seen).toEqual(['note.txt', 'sent the first', 'photo.jpg']);
  });

  it.each([
    ['inside the length prefix', 2],
    ['inside a header', 10],
    ['inside the content', body.length - files.at(-1)![1].length - 20],
    ['one byte short', body.length - 1],
  ])('refuses a body that ends %s (PV_INVALID_INPUT)', async (_name, length) => {
    await expect(read(inPieces(body.subarray(0, length), [3]))).rejects.toMatchObject({
      code: 'PV_INVALID_INPUT',
      message: expect.stringMatching(/ends inside a record/),
    });
  });

  it('refuses a header longer than allowed before waiting for its bytes', async () => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(RECORD_HEADER_MAX_BYTES + 1);
    await expect(read(inPieces(length, [4]))).rejects.toMatchObject({
      code: 'PV_INVALID_INPUT',
      message: expect.stringMatching(/header of/),
    });
  });

  it('refuses more records than the limit, after yielding those within it', async () => {
    const many = framed(Array.from({ length: 3 }, (_, at): [string, Buffer] => [`f${at}`, Buffer.from(`${at}`)]));
    const names: string[] = [];
    const reading = (async () => {
      for await (const record of readFileRecords<NamedHeader>(inPieces(many, [1]), { ...LIMITS, records: 2 }))
        names.push(record.header.name);
    })();
    await expect(reading).rejects.toMatchObject({ code: 'PV_INVALID_INPUT', message: expect.stringMatching(/at most 2 records/) });
    expect(names).toEqual(['f0', 'f1']);
  });

  it('refuses a record with more content than the limit', async () => {
    await expect(read(inPieces(framed([['big', Buffer.alloc(11)]]), [5]), { ...LIMITS, recordBytes: 10 })).rejects.toMatchObject({
      code: 'PV_INVALID_INPUT',
      message: expect.stringMatching(/at most 10/),
    });
  });

  it.each([
    ['without a size', '{"name":"x"}'],
    ['with a negative size', '{"size":-1}'],
    ['with a fractional size', '{"size":1.5}'],
    ['with a size that is a string', '{"size":"3"}'],
    ['that is null', 'null'],
    ['that is a number', '3'],
  ])('refuses a header %s', async (_name, json) => {
    await expect(read(inPieces(withHeaderJson(json), [1]))).rejects.toMatchObject({
      code: 'PV_INVALID_INPUT',
      message: expect.stringMatching(/without a byte count/),
    });
  });

  it('refuses a header that is not JSON, saying what to do', async () => {
    await expect(read(inPieces(withHeaderJson('{size: 3'), [1]))).rejects.toMatchObject({
      code: 'PV_INVALID_INPUT',
      message: expect.stringMatching(/not JSON/),
      fix: expect.stringMatching(/Whole files/),
    });
  });
});
