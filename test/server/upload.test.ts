import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CHUNK_MAX_SIZE } from '../../src/core/chunker.js';
import { sha256Hex } from '../../src/core/hash.js';
import { encodeManifest, MAX_MANIFEST_CHUNKS } from '../../src/core/manifest.js';
import { diffManifests, encodeManifestDiff } from '../../src/core/manifest-diff.js';
import { FILE_RECORDS_TYPE, recordHeader } from '../../src/core/file-records.js';
import {
  type UploadFailure,
  type UploadRequest,
  type UploadStatus,
  UPLOADS_PER_BATCH_MAX,
  WHOLE_FILE_MAX_BYTES,
} from '../../src/core/protocol.js';
import { describeEachDatabase } from '../support/databases.js';
import { createTestServer, type TestServer } from '../support/server.js';
import { begin, commit, download, prepareUpload, pseudoRandomBytes, putChunk, uploadBytes } from '../support/uploads.js';

/** The uploads that have staged content, or whether one has. */
async function stagedUploads(server: TestServer): Promise<string[]> {
  const ids: string[] = [];
  for await (const id of server.context.staging.uploads()) ids.push(id);
  return ids.sort();
}

async function isStaged(server: TestServer, uploadId: string): Promise<boolean> {
  return (await stagedUploads(server)).includes(uploadId);
}

async function storedObjects(server: TestServer): Promise<number> {
  return (await server.context.db.selectFrom('objects').select('hash').execute()).length;
}

describeEachDatabase('upload protocol', (kind) => {
  let server: TestServer;
  let alice: Awaited<ReturnType<TestServer['login']>>;

  // One server per database for the whole suite (each test uses paths of its own): creating a
  // PostgreSQL database and hashing passwords per test would dominate the run time.
  beforeAll(async () => {
    server = await createTestServer(kind);
    alice = await server.login('alice');
  });
  afterAll(async () => {
    await server.close();
  });

  it('commits a new file from its chunks and serves it back byte-identical', async () => {
    const bytes = pseudoRandomBytes(3 * 1024 * 1024 + 17, 1);
    const stagedBefore = await stagedUploads(server);
    const { status, bytesSent } = await uploadBytes(server.app, alice.auth, 'photos/one.bin', bytes);
    expect(status.state).toBe('committed');
    expect(status.file?.path).toBe('photos/one.bin');
    expect(bytesSent).toBe(bytes.length);
    const got = await download(server.app, alice.auth, 'photos/one.bin');
    expect(got.statusCode).toBe(200);
    expect(got.rawPayload.equals(bytes)).toBe(true);
    expect(got.headers.etag).toBe(`"${sha256Hex(bytes)}"`);
    expect(await stagedUploads(server)).toEqual(stagedBefore);
  });

  it('commits content the user already holds at once, sending nothing (whole-file dedup)', async () => {
    const bytes = pseudoRandomBytes(1024 * 1024, 2);
    await uploadBytes(server.app, alice.auth, 'a.bin', bytes);
    const objectsBefore = await storedObjects(server);
    const prepared = await prepareUpload('copy/of/a.bin', bytes);
    const answer = await begin(server.app, alice.auth, prepared.request);
    expect(answer.statusCode).toBe(200);
    const status = answer.json<UploadStatus>();
    expect(status).toMatchObject({ state: 'committed', missing: [], missingBytes: 0, file: { path: 'copy/of/a.bin' } });
    expect(await storedObjects(server)).toBe(objectsBefore);
  });

  it('asks only for the chunks around a 1 KiB insertion (chunk-level dedup)', async () => {
    const original = pseudoRandomBytes(8 * 1024 * 1024, 3);
    await uploadBytes(server.app, alice.auth, 'big.bin', original);
    const middle = original.length / 2;
    const edited = Buffer.concat([original.subarray(0, middle), pseudoRandomBytes(1024, 99), original.subarray(middle)]);
    const stagedWrites = vi.spyOn(server.context.staging, 'write');
    const { status, bytesSent } = await uploadBytes(server.app, alice.auth, 'big.bin', edited);
    const writes = stagedWrites.mock.calls.length;
    stagedWrites.mockRestore();
    expect(status.state).toBe('committed');
    // The commit copies the ~8 MiB it already holds in blocks of megabytes (each an S3 request
    // in the cluster form), not in the read stream's pieces of kilobytes.
    expect(writes).toBeGreaterThan(0);
    expect(writes).toBeLessThanOrEqual(8);
    expect(bytesSent).toBeLessThanOrEqual(2 * CHUNK_MAX_SIZE);
    expect(bytesSent).toBeGreaterThan(0);
    const got = await download(server.app, alice.auth, 'big.bin');
    expect(got.rawPayload.equals(edited)).toBe(true);
    const versions = await server.app.inject({ url: '/api/v1/files/versions?path=big.bin', headers: alice.auth });
    expect(versions.json()).toHaveLength(2);
  });

  it('resumes an interrupted upload sending only missing chunks', async () => {
    const bytes = pseudoRandomBytes(2 * 1024 * 1024, 4);
    const prepared = await prepareUpload('resume.bin', bytes);
    const first = (await begin(server.app, alice.auth, prepared.request)).json<UploadStatus>();
    const [sent, ...rest] = first.missing;
    expect((await putChunk(server.app, alice.auth, first.uploadId!, sent!, prepared.chunkBytes.get(sent!)!)).statusCode).toBe(200);

    const again = (await begin(server.app, alice.auth, prepared.request)).json<UploadStatus>();
    expect(again.uploadId).toBe(first.uploadId);
    expect(new Set(again.missing)).toEqual(new Set(rest));
    const status = (await server.app.inject({ url: `/api/v1/uploads/${first.uploadId}`, headers: alice.auth })).json<UploadStatus>();
    expect(status.missingBytes).toBe(bytes.length - prepared.chunkBytes.get(sent!)!.length);

    // Repeating a chunk that already arrived is harmless.
    const repeat = await putChunk(server.app, alice.auth, first.uploadId!, sent!, prepared.chunkBytes.get(sent!)!);
    expect(repeat.json()).toEqual({ hash: sent, stored: false });
    for (const hash of rest) await putChunk(server.app, alice.auth, first.uploadId!, hash, prepared.chunkBytes.get(hash)!);
    expect((await commit(server.app, alice.auth, first.uploadId!)).statusCode).toBe(200);
    expect((await download(server.app, alice.auth, 'resume.bin')).rawPayload.equals(bytes)).toBe(true);
  });

  it('answers identical negotiations racing each other with one upload', async () => {
    const prepared = await prepareUpload('race.bin', pseudoRandomBytes(400_000, 15));
    const answers = await Promise.all(Array.from({ length: 6 }, () => begin(server.app, alice.auth, prepared.request)));
    const ids = new Set(answers.map((answer) => answer.json<UploadStatus>().uploadId));
    expect(ids.size).toBe(1);
    expect([...ids][0]).toEqual(expect.any(String));
  });

  it('rejects a chunk whose bytes do not match its hash and keeps nothing of it', async () => {
    const prepared = await prepareUpload('bad.bin', pseudoRandomBytes(300_000, 5));
    const status = (await begin(server.app, alice.auth, prepared.request)).json<UploadStatus>();
    const hash = status.missing[0]!;
    const forged = Buffer.from(prepared.chunkBytes.get(hash)!);
    forged[100] = forged[100]! ^ 0xff;
    const answer = await putChunk(server.app, alice.auth, status.uploadId!, hash, forged);
    expect(answer.statusCode).toBe(422);
    expect(answer.headers['content-type']).toContain('application/problem+json');
    expect(answer.json()).toMatchObject({ code: 'PV_UPLOAD_CHUNK_HASH_MISMATCH', status: 422 });
    expect(await isStaged(server, status.uploadId!)).toBe(false);
    const after = (await server.app.inject({ url: `/api/v1/uploads/${status.uploadId}`, headers: alice.auth })).json<UploadStatus>();
    expect(after.missing).toContain(hash);
  });

  it('rejects a truncated chunk body and keeps nothing of it', async () => {
    const prepared = await prepareUpload('short.bin', pseudoRandomBytes(300_000, 6));
    const status = (await begin(server.app, alice.auth, prepared.request)).json<UploadStatus>();
    const hash = status.missing[0]!;
    const answer = await putChunk(server.app, alice.auth, status.uploadId!, hash, prepared.chunkBytes.get(hash)!.subarray(0, 1000));
    expect(answer.statusCode).toBe(400);
    expect(answer.json().code).toBe('PV_UPLOAD_CHUNK_TRUNCATED');
    expect(await isStaged(server, status.uploadId!)).toBe(false);
  });

  it('rejects a chunk the upload does not expect', async () => {
    const prepared = await prepareUpload('x.bin', pseudoRandomBytes(100_000, 7));
    const status = (await begin(server.app, alice.auth, prepared.request)).json<UploadStatus>();
    const stranger = pseudoRandomBytes(1000, 8);
    const answer = await putChunk(server.app, alice.auth, status.uploadId!, sha256Hex(stranger), stranger);
    expect(answer.statusCode).toBe(409);
    expect(answer.json().code).toBe('PV_UPLOAD_CHUNK_NOT_EXPECTED');
  });

  describe('several chunks to a request', () => {
    const putChunks = (uploadId: string, hashes: string[], body: Buffer, url = `/api/v1/uploads/${uploadId}/chunks`, method = 'PUT') =>
      server.app.inject({
        method: method as 'PUT',
        url: `${url}?hashes=${hashes.join(',')}`,
        headers: { ...alice.auth, 'content-type': 'application/octet-stream' },
        payload: body,
      });
    const statusOf = async (uploadId: string) =>
      (await server.app.inject({ url: `/api/v1/uploads/${uploadId}`, headers: alice.auth })).json<UploadStatus>();
    const begun = async (path: string, bytes: Buffer) => {
      const prepared = await prepareUpload(path, bytes);
      const status = (await begin(server.app, alice.auth, prepared.request)).json<UploadStatus>();
      const chunks = prepared.fingerprint.chunks.filter((chunk) => status.missing.includes(chunk.hash));
      return {
        prepared,
        status,
        chunks,
        body: (from = 0, to = chunks.length) => Buffer.concat(chunks.slice(from, to).map((c) => prepared.chunkBytes.get(c.hash)!)),
      };
    };

    it('takes chunks back to back in one request, each checked as if sent alone', async () => {
      const bytes = pseudoRandomBytes(1024 * 1024 + 5, 30);
      const { status, chunks, body } = await begun('batch/one.bin', bytes);
      expect(chunks.length).toBeGreaterThan(4);
      const answer = await putChunks(
        status.uploadId!,
        chunks.map((c) => c.hash),
        body(),
      );
      expect(answer.statusCode, answer.body).toBe(200);
      expect(answer.json().chunks).toEqual(chunks.map((c) => ({ hash: c.hash, stored: true })));
      expect((await statusOf(status.uploadId!)).missing).toEqual([]);
      // Sending them again is harmless.
      expect((await putChunks(status.uploadId!, [chunks[0]!.hash], body(0, 1))).json().chunks).toEqual([
        { hash: chunks[0]!.hash, stored: false },
      ]);
      expect((await commit(server.app, alice.auth, status.uploadId!)).json<UploadStatus>().state).toBe('committed');
      expect((await download(server.app, alice.auth, 'batch/one.bin')).rawPayload.equals(bytes)).toBe(true);
    });

    it('commits with the last chunks carried by the commit request itself', async () => {
      const bytes = pseudoRandomBytes(300_000, 31);
      const { status, chunks, body } = await begun('batch/two.bin', bytes);
      const answer = await putChunks(
        status.uploadId!,
        chunks.map((c) => c.hash),
        body(),
        `/api/v1/uploads/${status.uploadId}/commit`,
        'POST',
      );
      expect(answer.statusCode, answer.body).toBe(200);
      expect(answer.json<UploadStatus>()).toMatchObject({ state: 'committed', file: { path: 'batch/two.bin', size: bytes.length } });
      expect((await download(server.app, alice.auth, 'batch/two.bin')).rawPayload.equals(bytes)).toBe(true);
      expect(await isStaged(server, status.uploadId!)).toBe(false);
    });

    it('keeps the chunks before one that fails its hash, and not that one', async () => {
      const { status, chunks, body } = await begun('batch/three.bin', pseudoRandomBytes(400_000, 32));
      const forged = body(0, 2);
      forged[forged.length - 10] = forged[forged.length - 10]! ^ 0xff;
      const answer = await putChunks(status.uploadId!, [chunks[0]!.hash, chunks[1]!.hash], forged);
      expect(answer.statusCode).toBe(422);
      expect(answer.json()).toMatchObject({ code: 'PV_UPLOAD_CHUNK_HASH_MISMATCH' });
      expect(answer.json().detail).toContain(chunks[1]!.hash);
      const missing = (await statusOf(status.uploadId!)).missing;
      expect(missing).not.toContain(chunks[0]!.hash);
      expect(missing).toContain(chunks[1]!.hash);
    });

    it('refuses a body shorter or longer than the chunks it names, and chunks the upload does not expect', async () => {
      const { status, chunks, body } = await begun('batch/four.bin', pseudoRandomBytes(400_000, 33));
      const hashes = chunks.slice(0, 2).map((c) => c.hash);
      const short = await putChunks(status.uploadId!, hashes, body(0, 2).subarray(0, chunks[0]!.length + 100));
      expect(short.statusCode).toBe(400);
      expect(short.json()).toMatchObject({ code: 'PV_UPLOAD_CHUNK_TRUNCATED' });
      expect((await statusOf(status.uploadId!)).missing).toContain(hashes[1]);
      const long = await putChunks(status.uploadId!, hashes, Buffer.concat([body(0, 2), Buffer.from('more')]));
      expect(long.statusCode).toBe(400);
      expect(long.json()).toMatchObject({ code: 'PV_INVALID_INPUT' });
      const stranger = pseudoRandomBytes(1000, 34);
      const unexpected = await putChunks(status.uploadId!, [sha256Hex(stranger)], stranger);
      expect(unexpected.statusCode).toBe(409);
      expect(unexpected.json()).toMatchObject({ code: 'PV_UPLOAD_CHUNK_NOT_EXPECTED' });
    });
  });

  describe('several negotiations in one request', () => {
    const beginBatch = (auth: { authorization: string }, uploads: UploadRequest[]) =>
      server.app.inject({ method: 'POST', url: '/api/v1/uploads/batch', headers: auth, payload: { uploads } });
    const sendAndCommit = async (status: UploadStatus, prepared: Awaited<ReturnType<typeof prepareUpload>>) => {
      for (const hash of status.missing) await putChunk(server.app, alice.auth, status.uploadId!, hash, prepared.chunkBytes.get(hash)!);
      const committed = await commit(server.app, alice.auth, status.uploadId!);
      expect(committed.statusCode, committed.body).toBe(200);
    };

    it('answers each as POST /uploads would: held content committed, new content pending, an unfinished upload resumed, a bad one failed alone', async () => {
      const held = pseudoRandomBytes(200_000, 40);
      await uploadBytes(server.app, alice.auth, 'many/held.bin', held);
      const copy = await prepareUpload('many/copy-of-held.bin', held);
      const fresh = await prepareUpload('many/fresh.bin', pseudoRandomBytes(700_000, 41));
      const unfinished = await prepareUpload('many/unfinished.bin', pseudoRandomBytes(500_000, 42));
      const started = (await begin(server.app, alice.auth, unfinished.request)).json<UploadStatus>();
      const [sent, ...rest] = started.missing;
      await putChunk(server.app, alice.auth, started.uploadId!, sent!, unfinished.chunkBytes.get(sent!)!);
      const badManifest = await prepareUpload('many/bad.bin', pseudoRandomBytes(100_000, 43));
      const badPath = await prepareUpload('many/bad\u0000.bin', pseudoRandomBytes(1000, 44));

      const answer = await beginBatch(alice.auth, [
        copy.request,
        fresh.request,
        unfinished.request,
        { ...badManifest.request, size: badManifest.request.size + 1 },
        badPath.request,
        fresh.request,
      ]);
      expect(answer.statusCode, answer.body).toBe(200);
      const results = answer.json<{ results: (UploadStatus | UploadFailure)[] }>().results;
      expect(results).toHaveLength(6);
      expect(results[0]).toMatchObject({ state: 'committed', missing: [], missingBytes: 0, file: { path: 'many/copy-of-held.bin' } });
      expect(results[1]).toMatchObject({ state: 'pending', missingBytes: 700_000 });
      expect(new Set((results[1] as UploadStatus).missing)).toEqual(new Set(fresh.fingerprint.chunks.map((c) => c.hash)));
      expect(results[2]).toMatchObject({ state: 'pending', uploadId: started.uploadId });
      expect(new Set((results[2] as UploadStatus).missing)).toEqual(new Set(rest));
      expect(results[3]).toMatchObject({ state: 'failed', code: 'PV_MANIFEST_INVALID' });
      expect(results[4]).toMatchObject({ state: 'failed', code: 'PV_PATH_INVALID' });
      // The same negotiation twice: one upload, as two POST /uploads would give.
      expect((results[5] as UploadStatus).uploadId).toBe((results[1] as UploadStatus).uploadId);

      await sendAndCommit(results[1] as UploadStatus, fresh);
      await sendAndCommit(results[2] as UploadStatus, unfinished);
      expect((await download(server.app, alice.auth, 'many/fresh.bin')).rawPayload.equals(fresh.bytes)).toBe(true);
      expect((await download(server.app, alice.auth, 'many/unfinished.bin')).rawPayload.equals(unfinished.bytes)).toBe(true);
      expect((await download(server.app, alice.auth, 'many/copy-of-held.bin')).rawPayload.equals(held)).toBe(true);
    });

    it('asks another user for every chunk of content only alice holds, as it would ask for content nobody has', async () => {
      const bytes = pseudoRandomBytes(300_000, 45);
      await uploadBytes(server.app, alice.auth, 'many/private.bin', bytes);
      const bob = await server.login('bob');
      const prepared = await prepareUpload('mine.bin', bytes);
      const unknown = await prepareUpload('other.bin', pseudoRandomBytes(300_000, 46));
      const answer = await beginBatch(bob.auth, [prepared.request, unknown.request]);
      const [theirs, nobodys] = answer.json<{ results: UploadStatus[] }>().results;
      expect(theirs).toMatchObject({ state: 'pending', missingBytes: bytes.length });
      expect(new Set(theirs!.missing)).toEqual(new Set(prepared.fingerprint.chunks.map((c) => c.hash)));
      expect(nobodys).toMatchObject({ state: 'pending', missingBytes: 300_000 });
    });

    it('takes edits against a held version with their manifest diff, and offers delta bases', async () => {
      const original = pseudoRandomBytes(2 * 1024 * 1024, 47);
      const first = await uploadBytes(server.app, alice.auth, 'many/edited.bin', original);
      const edited = Buffer.concat([original.subarray(0, 1024 * 1024), pseudoRandomBytes(500, 48), original.subarray(1024 * 1024)]);
      const next = await prepareUpload('many/edited.bin', edited);
      const diff = encodeManifestDiff(diffManifests(first.prepared.fingerprint.chunks, next.fingerprint.chunks));
      const { manifest: _whole, ...request } = next.request;
      const answer = await beginBatch(alice.auth, [
        { ...request, manifestDiff: diff.toString('base64'), baseVersionId: first.status.version!.id },
      ]);
      const [status] = answer.json<{ results: UploadStatus[] }>().results;
      expect(status).toMatchObject({ state: 'pending' });
      expect(status!.missingBytes).toBeLessThanOrEqual(2 * CHUNK_MAX_SIZE);
      expect(status!.deltaBases?.length).toBeGreaterThan(0);
      await sendAndCommit(status!, next);
      expect((await download(server.app, alice.auth, 'many/edited.bin')).rawPayload.equals(edited)).toBe(true);
    });

    it('refuses an empty batch and one over the limit', async () => {
      expect((await beginBatch(alice.auth, [])).json()).toMatchObject({ code: 'PV_INVALID_INPUT' });
      const one = (await prepareUpload('many/limit.bin', Buffer.from('x'))).request;
      const tooMany = await beginBatch(
        alice.auth,
        Array.from({ length: UPLOADS_PER_BATCH_MAX + 1 }, () => one),
      );
      expect(tooMany.statusCode).toBe(400);
      expect(tooMany.json()).toMatchObject({ code: 'PV_INVALID_INPUT' });
    });
  });

  describe('new files sent whole, many to a request', () => {
    const framed = (files: { request: UploadRequest; bytes: Buffer }[]) =>
      Buffer.concat(files.flatMap(({ request, bytes }) => [recordHeader(request), bytes]));
    const putWhole = (auth: { authorization: string }, body: Buffer) =>
      server.app.inject({
        method: 'POST',
        url: '/api/v1/uploads/files',
        headers: { ...auth, 'content-type': FILE_RECORDS_TYPE },
        payload: body,
      });
    const beginWhole = (auth: { authorization: string }, uploads: UploadRequest[]) =>
      server.app.inject({ method: 'POST', url: '/api/v1/uploads/batch', headers: auth, payload: { uploads, sendWhole: true } });
    const uploadRows = async () => (await server.context.db.selectFrom('uploads').select('id').execute()).length;

    it('asks for new small files whole, records nothing until they come, then commits them all byte-identical', async () => {
      const files = await Promise.all(
        [0, 1, 2, 70_000, 300_000].map((size, i) => prepareUpload(`whole/${i}/f.bin`, pseudoRandomBytes(size, 60 + i))),
      );
      const rowsBefore = await uploadRows();
      const negotiated = (
        await beginWhole(
          alice.auth,
          files.map((f) => f.request),
        )
      ).json<{ results: UploadStatus[] }>().results;
      for (const [at, status] of negotiated.entries()) {
        expect(status).toMatchObject({ state: 'send', uploadId: null, missingBytes: files[at]!.bytes.length });
      }
      expect(await uploadRows()).toBe(rowsBefore);

      const answer = await putWhole(alice.auth, framed(files.map((f) => ({ request: f.request, bytes: f.bytes }))));
      expect(answer.statusCode, answer.body).toBe(200);
      const results = answer.json<{ results: UploadStatus[] }>().results;
      expect(results.map((r) => r.state)).toEqual(files.map(() => 'committed'));
      for (const [at, file] of files.entries()) {
        expect(results[at]!.file?.path).toBe(`whole/${at}/f.bin`);
        expect((await download(server.app, alice.auth, `whole/${at}/f.bin`)).rawPayload.equals(file.bytes)).toBe(true);
      }
      // Recorded as any upload: the feed has each, and their chunks are the user's to dedup against.
      const again = (await beginWhole(alice.auth, [{ ...files[4]!.request, path: 'whole/copy.bin' }])).json<{ results: UploadStatus[] }>();
      expect(again.results[0]).toMatchObject({ state: 'committed', missingBytes: 0 });
      const edited = await prepareUpload('whole/edited.bin', Buffer.concat([files[4]!.bytes, Buffer.from('tail')]));
      const [editStatus] = (await beginWhole(alice.auth, [edited.request])).json<{ results: UploadStatus[] }>().results;
      expect(editStatus).toMatchObject({ state: 'pending' });
      expect(editStatus!.missingBytes).toBeLessThan(CHUNK_MAX_SIZE);
    });

    it('fails alone a file whose bytes do not match its chunks or content hash, or whose path is bad, and stores nothing of it', async () => {
      const good = await prepareUpload('whole/ok.bin', pseudoRandomBytes(100_000, 70));
      const tampered = await prepareUpload('whole/tampered.bin', pseudoRandomBytes(100_000, 71));
      const lying = await prepareUpload('whole/lying.bin', pseudoRandomBytes(100_000, 72));
      const badPath = await prepareUpload('../escape.bin', pseudoRandomBytes(1000, 73));
      const flipped = Buffer.from(tampered.bytes);
      flipped[500]! ^= 1;
      const objectsBefore = await storedObjects(server);
      const answer = await putWhole(
        alice.auth,
        framed([
          { request: tampered.request, bytes: flipped },
          // Chunks that match their manifest, under a content hash that is another file's.
          {
            request: { ...lying.request, contentHash: good.request.contentHash.replace(/^./, (c) => (c === '0' ? '1' : '0')) },
            bytes: lying.bytes,
          },
          { request: badPath.request, bytes: badPath.bytes },
          { request: good.request, bytes: good.bytes },
        ]),
      );
      expect(answer.statusCode, answer.body).toBe(200);
      const results = answer.json<{ results: (UploadStatus | UploadFailure)[] }>().results;
      expect(results[0]).toMatchObject({ state: 'failed', code: 'PV_UPLOAD_CHUNK_HASH_MISMATCH' });
      expect(results[1]).toMatchObject({ state: 'failed', code: 'PV_UPLOAD_HASH_MISMATCH' });
      expect(results[2]).toMatchObject({ state: 'failed', code: 'PV_PATH_INVALID' });
      expect(results[3]).toMatchObject({ state: 'committed', file: { path: 'whole/ok.bin' } });
      expect(await storedObjects(server)).toBe(objectsBefore + 1);
      for (const path of ['whole/tampered.bin', 'whole/lying.bin'])
        expect((await download(server.app, alice.auth, path)).statusCode).toBe(404);
    });

    it('keeps a conflict copy for a file whose path moved on since its base, and takes a path that is free again', async () => {
      const first = await uploadBytes(server.app, alice.auth, 'whole/shared.txt', Buffer.from('first'));
      await uploadBytes(server.app, alice.auth, 'whole/shared.txt', Buffer.from('second'), { baseVersionId: first.status.version!.id });
      const stale = await prepareUpload('whole/shared.txt', Buffer.from('edited from first'), { baseVersionId: first.status.version!.id });
      const results = (await putWhole(alice.auth, framed([{ request: stale.request, bytes: stale.bytes }]))).json<{
        results: UploadStatus[];
      }>().results;
      expect(results[0]).toMatchObject({ state: 'committed' });
      expect(results[0]!.conflictPath).toMatch(/^whole\/shared\.conflict-.*\.txt$/);
      expect((await download(server.app, alice.auth, 'whole/shared.txt')).rawPayload.toString()).toBe('second');
      expect((await download(server.app, alice.auth, results[0]!.conflictPath!)).rawPayload.toString()).toBe('edited from first');
    });

    it('commits the same new file twice in one body once, and content the user already holds without storing it again', async () => {
      const held = await uploadBytes(server.app, alice.auth, 'whole/held.bin', pseudoRandomBytes(50_000, 74));
      const twice = await prepareUpload('whole/twice.bin', pseudoRandomBytes(50_000, 75));
      const copy = await prepareUpload('whole/held-copy.bin', held.prepared.bytes);
      const objectsBefore = await storedObjects(server);
      const results = (
        await putWhole(
          alice.auth,
          framed([
            { request: twice.request, bytes: twice.bytes },
            { request: twice.request, bytes: twice.bytes },
            { request: copy.request, bytes: copy.bytes },
          ]),
        )
      ).json<{ results: UploadStatus[] }>().results;
      expect(results.map((r) => r.state)).toEqual(['committed', 'committed', 'committed']);
      expect(results[1]!.version!.id).toBe(results[0]!.version!.id);
      expect(await storedObjects(server)).toBe(objectsBefore + 1);
      expect((await download(server.app, alice.auth, 'whole/held-copy.bin')).rawPayload.equals(held.prepared.bytes)).toBe(true);
    });

    it('refuses a body that is not framed records, ends inside a record or holds more than the limits, keeping the files before it', async () => {
      const first = await prepareUpload('whole/before-break.bin', pseudoRandomBytes(20_000, 76));
      const second = await prepareUpload('whole/broken.bin', pseudoRandomBytes(20_000, 77));
      const body = framed([
        { request: first.request, bytes: first.bytes },
        { request: second.request, bytes: second.bytes },
      ]);
      const truncated = await putWhole(alice.auth, body.subarray(0, body.length - 10));
      expect(truncated.statusCode).toBe(400);
      expect(truncated.json()).toMatchObject({ code: 'PV_INVALID_INPUT' });
      expect((await download(server.app, alice.auth, 'whole/before-break.bin')).statusCode).toBe(200);
      expect((await download(server.app, alice.auth, 'whole/broken.bin')).statusCode).toBe(404);

      const notFramed = await putWhole(alice.auth, Buffer.from('{"path":"x"}'));
      expect(notFramed.statusCode).toBe(400);
      const plain = await server.app.inject({
        method: 'POST',
        url: '/api/v1/uploads/files',
        headers: { ...alice.auth, 'content-type': 'application/octet-stream' },
        payload: body,
      });
      expect(plain.statusCode).toBe(400);
      const big = await prepareUpload('whole/too-big.bin', Buffer.alloc(WHOLE_FILE_MAX_BYTES + 1));
      const tooBig = await putWhole(alice.auth, framed([{ request: big.request, bytes: big.bytes }]));
      expect(tooBig.statusCode).toBe(400);
      expect(tooBig.json()).toMatchObject({ code: 'PV_INVALID_INPUT' });
    });

    it("answers another user exactly as if nobody held the content, and never records a file for them from alice's", async () => {
      const bytes = pseudoRandomBytes(80_000, 78);
      await uploadBytes(server.app, alice.auth, 'whole/alices.bin', bytes);
      const bob = await server.login('bob-whole');
      const prepared = await prepareUpload('bobs.bin', bytes);
      const [negotiated] = (await beginWhole(bob.auth, [prepared.request])).json<{ results: UploadStatus[] }>().results;
      expect(negotiated).toMatchObject({ state: 'send', missingBytes: bytes.length });
      // Bob must send the bytes to get the file: a hash alone gets him nothing.
      const [empty] = (await putWhole(bob.auth, framed([{ request: prepared.request, bytes: Buffer.alloc(bytes.length) }]))).json<{
        results: (UploadStatus | UploadFailure)[];
      }>().results;
      expect(empty).toMatchObject({ state: 'failed', code: 'PV_UPLOAD_CHUNK_HASH_MISMATCH' });
      const [sent] = (await putWhole(bob.auth, framed([{ request: prepared.request, bytes }]))).json<{ results: UploadStatus[] }>().results;
      expect(sent).toMatchObject({ state: 'committed', file: { path: 'bobs.bin' } });
      expect((await download(server.app, bob.auth, 'bobs.bin')).rawPayload.equals(bytes)).toBe(true);
    });
  });

  it('refuses to commit while chunks are missing, and lists them', async () => {
    const prepared = await prepareUpload('partial.bin', pseudoRandomBytes(1024 * 1024, 9));
    const status = (await begin(server.app, alice.auth, prepared.request)).json<UploadStatus>();
    const answer = await commit(server.app, alice.auth, status.uploadId!);
    expect(answer.statusCode).toBe(409);
    expect(answer.json()).toMatchObject({ code: 'PV_UPLOAD_INCOMPLETE' });
    expect(new Set(answer.json().missing)).toEqual(new Set(status.missing));
    expect((await server.app.inject({ url: '/api/v1/files/stat?path=partial.bin', headers: alice.auth })).statusCode).toBe(404);
  });

  it('refuses a commit whose chunks do not make the declared content, storing nothing', async () => {
    const bytes = pseudoRandomBytes(200_000, 10);
    const objectsBefore = await storedObjects(server);
    const prepared = await prepareUpload('lie.bin', bytes, { contentHash: sha256Hex('something else') });
    const status = (await begin(server.app, alice.auth, prepared.request)).json<UploadStatus>();
    for (const hash of status.missing) await putChunk(server.app, alice.auth, status.uploadId!, hash, prepared.chunkBytes.get(hash)!);
    const answer = await commit(server.app, alice.auth, status.uploadId!);
    expect(answer.statusCode).toBe(422);
    expect(answer.json().code).toBe('PV_UPLOAD_HASH_MISMATCH');
    expect(await storedObjects(server)).toBe(objectsBefore);
    expect(await isStaged(server, status.uploadId!)).toBe(false);
    expect((await server.app.inject({ url: '/api/v1/files/stat?path=lie.bin', headers: alice.auth })).statusCode).toBe(404);
  });

  it.each([['../escape.jpg'], ['/etc/passwd'], ['photos/../../x'], ['nul\u0000.jpg'], ['tab\t.jpg'], ['esc\u001b[31m.jpg']])(
    'rejects the hostile path %j before storing anything',
    async (path) => {
      const prepared = await prepareUpload(path, pseudoRandomBytes(1000, 11));
      const uploadsBefore = await server.context.db.selectFrom('uploads').select('id').execute();
      const answer = await begin(server.app, alice.auth, prepared.request);
      expect(answer.statusCode).toBe(400);
      expect(answer.json()).toMatchObject({ code: expect.stringMatching(/PV_PATH_INVALID|PV_INVALID_INPUT/) });
      expect(await server.context.db.selectFrom('uploads').select('id').execute()).toEqual(uploadsBefore);
    },
  );

  it('rejects a manifest listing more chunks than the protocol allows', async () => {
    const entry = { hash: sha256Hex('x'), length: 1 };
    const manifest = encodeManifest(Array.from({ length: MAX_MANIFEST_CHUNKS + 1 }, () => entry)).toString('base64');
    const answer = await begin(server.app, alice.auth, {
      path: 'huge.bin',
      size: MAX_MANIFEST_CHUNKS + 1,
      mtime: 0,
      contentHash: sha256Hex('x'),
      manifest,
    });
    expect(answer.statusCode).toBe(413);
    expect(answer.json().code).toBe('PV_MANIFEST_TOO_LARGE');
  });

  it.each([
    ['sizes that do not add up', { size: 999 }],
    [
      'a chunk longer than the protocol maximum',
      { size: CHUNK_MAX_SIZE + 1, manifest: encodeManifest([{ hash: sha256Hex('y'), length: CHUNK_MAX_SIZE + 1 }]).toString('base64') },
    ],
    ['a manifest that is not one', { manifest: Buffer.from('garbage').toString('base64') }],
  ])('rejects a manifest with %s', async (_name, override) => {
    const prepared = await prepareUpload('m.bin', pseudoRandomBytes(1000, 12), override);
    const answer = await begin(server.app, alice.auth, prepared.request);
    expect(answer.statusCode).toBe(400);
    expect(answer.json().code).toBe('PV_MANIFEST_INVALID');
  });

  it('expires an abandoned upload and its staged chunks', async () => {
    const prepared = await prepareUpload('abandoned.bin', pseudoRandomBytes(500_000, 13));
    const status = (await begin(server.app, alice.auth, prepared.request)).json<UploadStatus>();
    const put = await putChunk(server.app, alice.auth, status.uploadId!, status.missing[0]!, prepared.chunkBytes.get(status.missing[0]!)!);
    expect(put.statusCode, put.body).toBe(200);
    expect(await isStaged(server, status.uploadId!)).toBe(true);
    const stillLive = async () => (await server.app.inject({ url: `/api/v1/uploads/${status.uploadId}`, headers: alice.auth })).statusCode;
    server.clock.advance(23 * 3_600_000);
    await server.context.uploads.sweep();
    expect(await stillLive()).toBe(200);
    server.clock.advance(2 * 3_600_000);
    expect(await server.context.uploads.sweep()).toBeGreaterThanOrEqual(1);
    expect(await isStaged(server, status.uploadId!)).toBe(false);
    expect((await server.app.inject({ url: `/api/v1/uploads/${status.uploadId}`, headers: alice.auth })).json().code).toBe(
      'PV_UPLOAD_NOT_FOUND',
    );
  });

  it('keeps a commit based on an old version as a conflict copy beside the file', async () => {
    const first = await uploadBytes(server.app, alice.auth, 'notes.txt', Buffer.from('version one'));
    await uploadBytes(server.app, alice.auth, 'notes.txt', Buffer.from('version two'));
    const { status } = await uploadBytes(server.app, alice.auth, 'notes.txt', Buffer.from('edited from one'), {
      baseVersionId: first.status.version!.id,
    });
    expect(status.conflictPath).toMatch(/^notes\.conflict-alice-laptop-\d{8}-\d{6}\.txt$/);
    expect((await download(server.app, alice.auth, 'notes.txt')).body).toBe('version two');
    expect((await download(server.app, alice.auth, status.conflictPath!)).body).toBe('edited from one');
  });

  it('keeps a modification made against a file another device deleted meanwhile', async () => {
    const first = await uploadBytes(server.app, alice.auth, 'kept.txt', Buffer.from('original'));
    await server.app.inject({ method: 'DELETE', url: '/api/v1/files?path=kept.txt', headers: alice.auth });
    const { status } = await uploadBytes(server.app, alice.auth, 'kept.txt', Buffer.from('edited offline'), {
      baseVersionId: first.status.version!.id,
    });
    expect(status).toMatchObject({ state: 'committed', conflictPath: null, file: { path: 'kept.txt' } });
    expect((await download(server.app, alice.auth, 'kept.txt')).body).toBe('edited offline');
  });

  it('stores an empty file', async () => {
    const { status } = await uploadBytes(server.app, alice.auth, 'empty', Buffer.alloc(0));
    expect(status.file).toMatchObject({ size: 0, kind: 'file' });
    const got = await download(server.app, alice.auth, 'empty');
    expect(got.statusCode).toBe(200);
    expect(got.rawPayload.length).toBe(0);
  });

  it('refuses to put a file where a folder is, and a folder where a file is', async () => {
    await uploadBytes(server.app, alice.auth, 'a/b.txt', Buffer.from('b'));
    const asFile = await begin(server.app, alice.auth, (await prepareUpload('a', Buffer.from('b'))).request);
    expect(asFile.json().code).toBe('PV_CONFLICT');
    const underFile = await prepareUpload('a/b.txt/c.txt', Buffer.from('c'));
    const status = (await begin(server.app, alice.auth, underFile.request)).json<UploadStatus>();
    expect(status.state).toBe('pending');
    for (const hash of status.missing) await putChunk(server.app, alice.auth, status.uploadId!, hash, underFile.chunkBytes.get(hash)!);
    expect((await commit(server.app, alice.auth, status.uploadId!)).json().code).toBe('PV_CONFLICT');
  });

  it('asks again for staged chunks a crash lost or damaged instead of failing the upload', async () => {
    const bytes = pseudoRandomBytes(1024 * 1024, 14);
    const prepared = await prepareUpload('crashy.bin', bytes);
    const status = (await begin(server.app, alice.auth, prepared.request)).json<UploadStatus>();
    for (const hash of status.missing) await putChunk(server.app, alice.auth, status.uploadId!, hash, prepared.chunkBytes.get(hash)!);
    const [lost, damaged] = status.missing.map((hash) => prepared.fingerprint.chunks.find((c) => c.hash === hash)!);
    // What a crash can do to unflushed staged bytes: leave a hole (zeros) or a torn write (the
    // start of the chunk, then garbage).
    await server.context.staging.write(status.uploadId!, Buffer.alloc(lost!.length), [lost!.offset]);
    const torn = Buffer.concat([prepared.chunkBytes.get(damaged!.hash)!.subarray(0, 100), Buffer.from('torn write')]);
    await server.context.staging.write(status.uploadId!, torn, [damaged!.offset]);

    const answer = await commit(server.app, alice.auth, status.uploadId!);
    expect(answer.statusCode).toBe(409);
    expect(answer.json().code).toBe('PV_UPLOAD_INCOMPLETE');
    expect(new Set(answer.json().missing)).toEqual(new Set([lost!.hash, damaged!.hash]));
    for (const { hash } of [lost!, damaged!])
      await putChunk(server.app, alice.auth, status.uploadId!, hash, prepared.chunkBytes.get(hash)!);
    expect((await commit(server.app, alice.auth, status.uploadId!)).statusCode).toBe(200);
    expect((await download(server.app, alice.auth, 'crashy.bin')).rawPayload.equals(bytes)).toBe(true);
  });
});
