import { afterAll, beforeAll, expect, it } from 'vitest';
import { applyDelta, decodeSignature, encodeDelta } from '../../src/core/delta.js';
import { decodeManifest, MAX_MANIFEST_CHUNKS } from '../../src/core/manifest.js';
import { applyManifestDiff, decodeManifestDiff, diffManifests, encodeManifestDiff } from '../../src/core/manifest-diff.js';
import type { UploadStatus, VersionPatch } from '../../src/core/protocol.js';
import { writeVarint } from '../../src/core/varint.js';
import { describeEachDatabase } from '../support/databases.js';
import { createTestServer, type TestServer } from '../support/server.js';
import { begin, commit, download, prepareUpload, pseudoRandomBytes, uploadBytes } from '../support/uploads.js';

type Auth = { authorization: string };
const MiB = 1024 * 1024;
const DELTA_TYPE = 'application/vnd.photovault.delta';

const varint = (value: number) => {
  const out = Buffer.alloc(5);
  return out.subarray(0, writeVarint(out, 0, value));
};
const insertMiddle = (bytes: Buffer, inserted: Buffer) =>
  Buffer.concat([bytes.subarray(0, bytes.length / 2), inserted, bytes.subarray(bytes.length / 2)]);

describeEachDatabase('delta transfer', (kind) => {
  let server: TestServer;
  let alice: { auth: Auth };
  let bob: { auth: Auth };

  beforeAll(async () => {
    server = await createTestServer(kind);
    alice = await server.login('alice');
    bob = await server.login('bob');
  });
  afterAll(async () => {
    await server.close();
  });

  const putDelta = (auth: Auth, uploadId: string, hash: string, base: string[], delta: Buffer) =>
    server.app.inject({
      method: 'PUT',
      url: `/api/v1/uploads/${uploadId}/chunks/${hash}?base=${base.join(',')}`,
      headers: { ...auth, 'content-type': DELTA_TYPE },
      payload: delta,
    });

  const putDeltas = (auth: Auth, uploadId: string, hashes: string[], base: string[], delta: Buffer) =>
    server.app.inject({
      method: 'PUT',
      url: `/api/v1/uploads/${uploadId}/chunks?hashes=${hashes.join(',')}&base=${base.join(',')}`,
      headers: { ...auth, 'content-type': DELTA_TYPE },
      payload: delta,
    });

  /** Uploads original at path, then negotiates edited against it with a manifest diff. */
  async function negotiateEdit(path: string, original: Buffer, edited: Buffer) {
    const first = await uploadBytes(server.app, alice.auth, path, original);
    const base = await prepareUpload(path, original);
    const next = await prepareUpload(path, edited);
    const diff = encodeManifestDiff(diffManifests(base.fingerprint.chunks, next.fingerprint.chunks));
    const { manifest: _whole, ...request } = next.request;
    const answer = await begin(server.app, alice.auth, {
      ...request,
      manifestDiff: diff.toString('base64'),
      baseVersionId: first.status.version!.id,
    });
    expect(answer.statusCode, answer.body).toBe(201);
    return { status: answer.json<UploadStatus>(), next, baseVersionId: first.status.version!.id, diffBytes: diff.length };
  }

  it('takes an edit as a manifest diff and changed chunks as deltas against the chunks they replaced', async () => {
    const original = pseudoRandomBytes(8 * MiB, 1);
    const edited = insertMiddle(original, pseudoRandomBytes(1024, 2));
    const { status, next, diffBytes } = await negotiateEdit('edit.bin', original, edited);
    expect(diffBytes).toBeLessThan(200);
    expect(status.deltaBases?.length).toBeGreaterThan(0);
    let sent = 0;
    for (const offer of status.deltaBases!) {
      const signature = decodeSignature(Buffer.from(offer.signature, 'base64'));
      for (const hash of offer.chunks) {
        const delta = encodeDelta(next.chunkBytes.get(hash)!, signature);
        const answer = await putDelta(alice.auth, status.uploadId!, hash, offer.base, delta);
        expect(answer.statusCode, answer.body).toBe(200);
        expect(answer.json()).toEqual({ hash, stored: true });
        sent += delta.length;
      }
    }
    expect(new Set(status.deltaBases!.flatMap((offer) => offer.chunks))).toEqual(new Set(status.missing));
    expect(sent).toBeLessThan(4 * 1024);
    const committed = await commit(server.app, alice.auth, status.uploadId!);
    expect(committed.statusCode, committed.body).toBe(200);
    expect((await download(server.app, alice.auth, 'edit.bin')).rawPayload.equals(edited)).toBe(true);
  });

  it('takes the chunks of a region as one delta over their bytes, where per-chunk deltas pay at every chunk edge', async () => {
    // An insert that moves seven chunk boundaries (found by search; about 1 edit in 20 moves more than one).
    const original = pseudoRandomBytes(4 * MiB, 23);
    const at = 2482211;
    const edited = Buffer.concat([original.subarray(0, at), pseudoRandomBytes(1024, 5023), original.subarray(at)]);
    const { status, next } = await negotiateEdit('region.bin', original, edited);
    expect(status.deltaBases).toHaveLength(1);
    const offer = status.deltaBases![0]!;
    expect(offer.chunks.length).toBeGreaterThanOrEqual(5);
    const signature = decodeSignature(Buffer.from(offer.signature, 'base64'));
    const run = next.fingerprint.chunks.filter((chunk) => offer.chunks.includes(chunk.hash));
    const hashes = run.map((chunk) => chunk.hash);
    const runBytes = Buffer.concat(run.map((chunk) => next.chunkBytes.get(chunk.hash)!));
    const delta = encodeDelta(runBytes, signature);
    const perChunk = run.reduce((sum, chunk) => sum + encodeDelta(next.chunkBytes.get(chunk.hash)!, signature).length, 0);
    expect(delta.length).toBeLessThan(4 * 1024);
    expect(perChunk).toBeGreaterThan(3 * delta.length);

    const answer = await putDeltas(alice.auth, status.uploadId!, hashes, offer.base, delta);
    expect(answer.statusCode, answer.body).toBe(200);
    expect(answer.json()).toEqual({ chunks: run.map((chunk) => ({ hash: chunk.hash, stored: true })) });
    const committed = await commit(server.app, alice.auth, status.uploadId!);
    expect(committed.statusCode, committed.body).toBe(200);
    expect((await download(server.app, alice.auth, 'region.bin')).rawPayload.equals(edited)).toBe(true);
  });

  it('keeps the chunks a region delta rebuilt right before one that fails its hash, and not that one', async () => {
    const original = pseudoRandomBytes(4 * MiB, 1);
    const at = 1703952;
    const edited = Buffer.concat([original.subarray(0, at), pseudoRandomBytes(1024, 5001), original.subarray(at)]);
    const { status, next } = await negotiateEdit('region-wrong.bin', original, edited);
    const offer = status.deltaBases![0]!;
    const run = next.fingerprint.chunks.filter((chunk) => offer.chunks.includes(chunk.hash));
    const hashes = run.map((chunk) => chunk.hash);
    expect(run.length).toBeGreaterThanOrEqual(2);
    // A literal of the run's bytes with one byte of its last chunk flipped.
    const wrong = Buffer.concat(run.map((chunk) => next.chunkBytes.get(chunk.hash)!));
    wrong[wrong.length - 10]! ^= 0xff;
    const delta = Buffer.concat([Buffer.from([1, 2]), varint(wrong.length), wrong]);
    const answer = await putDeltas(alice.auth, status.uploadId!, hashes, offer.base, delta);
    expect(answer.statusCode).toBe(422);
    expect(answer.json()).toMatchObject({ code: 'PV_UPLOAD_CHUNK_HASH_MISMATCH' });
    const missing = (await server.app.inject({ url: `/api/v1/uploads/${status.uploadId}`, headers: alice.auth })).json<UploadStatus>()
      .missing;
    expect(missing).toEqual([run.at(-1)!.hash]);
  });

  it('offers the same delta bases again when the upload is resumed', async () => {
    const original = pseudoRandomBytes(2 * MiB, 3);
    const { status, next, baseVersionId } = await negotiateEdit(
      'resume.bin',
      original,
      insertMiddle(original, Buffer.from('x'.repeat(500))),
    );
    const again = await begin(server.app, alice.auth, { ...next.request, baseVersionId });
    expect(again.json<UploadStatus>()).toMatchObject({ uploadId: status.uploadId, deltaBases: status.deltaBases });
  });

  it('rejects a delta whose rebuilt bytes do not have the chunk hash, keeping nothing', async () => {
    const original = pseudoRandomBytes(2 * MiB, 4);
    const { status, next } = await negotiateEdit('wrong.bin', original, insertMiddle(original, pseudoRandomBytes(1024, 5)));
    const offer = status.deltaBases![0]!;
    const hash = offer.chunks[0]!;
    // Well-formed, the right length, one byte off: a literal of the chunk with a byte flipped.
    const wrong = Buffer.from(next.chunkBytes.get(hash)!);
    wrong[100]! ^= 0xff;
    const delta = Buffer.concat([Buffer.from([1, 2]), varint(wrong.length), wrong]);
    const answer = await putDelta(alice.auth, status.uploadId!, hash, offer.base, delta);
    expect(answer.statusCode).toBe(422);
    expect(answer.json()).toMatchObject({ code: 'PV_UPLOAD_CHUNK_HASH_MISMATCH' });
    const after = await server.app.inject({ url: `/api/v1/uploads/${status.uploadId}`, headers: alice.auth });
    expect(after.json<UploadStatus>().missing).toContain(hash);
  });

  it.each([
    ['an unknown format', Buffer.from([7])],
    ['a copy outside the base', Buffer.from([1, 1, 0x80, 0x80, 0x80, 0x01, 10])],
    ['a literal past the end of the body', Buffer.from([1, 2, 100, 1])],
  ])('rejects a malformed delta (%s) with PV_DELTA_INVALID', async (_name, delta) => {
    const original = pseudoRandomBytes(MiB, 6);
    const { status } = await negotiateEdit(`bad-${delta[1]}.bin`, original, insertMiddle(original, pseudoRandomBytes(1024, 7)));
    const offer = status.deltaBases![0]!;
    const answer = await putDelta(alice.auth, status.uploadId!, offer.chunks[0]!, offer.base, delta);
    expect(answer.statusCode).toBe(400);
    expect(answer.json()).toMatchObject({ code: 'PV_DELTA_INVALID' });
  });

  it("refuses another user's chunks as a delta base, answering as for chunks that do not exist", async () => {
    const secret = pseudoRandomBytes(MiB, 8);
    const bobs = await prepareUpload('secret.bin', secret);
    await uploadBytes(server.app, bob.auth, 'secret.bin', secret);
    const original = pseudoRandomBytes(MiB, 9);
    const { status } = await negotiateEdit('probe.bin', original, insertMiddle(original, pseudoRandomBytes(1024, 10)));
    const offer = status.deltaBases![0]!;
    const delta = Buffer.from([1, 1, 0, 16]);
    const theirs = await putDelta(alice.auth, status.uploadId!, offer.chunks[0]!, [bobs.fingerprint.chunks[0]!.hash], delta);
    const nobodys = await putDelta(alice.auth, status.uploadId!, offer.chunks[0]!, ['0'.repeat(64)], delta);
    expect(theirs.statusCode).toBe(400);
    expect(theirs.json()).toMatchObject({ code: 'PV_DELTA_INVALID' });
    expect(theirs.json().detail.replace(bobs.fingerprint.chunks[0]!.hash, 'H')).toBe(nobodys.json().detail.replace('0'.repeat(64), 'H'));
  });

  it('refuses a manifest diff without a base version of the user, and one that does not fit its base', async () => {
    const original = pseudoRandomBytes(MiB, 11);
    const first = await uploadBytes(server.app, alice.auth, 'fit.bin', original);
    const next = await prepareUpload('fit.bin', insertMiddle(original, pseudoRandomBytes(1024, 12)));
    const { manifest: _whole, ...request } = next.request;
    const diff = encodeManifestDiff(diffManifests(next.fingerprint.chunks.slice(0, 1), next.fingerprint.chunks)).toString('base64');
    const noBase = await begin(server.app, alice.auth, { ...request, manifestDiff: diff });
    const bobsView = await begin(server.app, bob.auth, { ...request, manifestDiff: diff, baseVersionId: first.status.version!.id });
    const misfit = await begin(server.app, alice.auth, {
      ...request,
      manifestDiff: encodeManifestDiff([{ copy: { start: 0, count: 1000 } }]).toString('base64'),
      baseVersionId: first.status.version!.id,
    });
    for (const answer of [noBase, bobsView, misfit]) {
      expect(answer.statusCode, answer.body).toBe(400);
      expect(answer.json()).toMatchObject({ code: 'PV_MANIFEST_INVALID' });
    }
  });

  it('serves a new version as a patch of an older one: manifest diff and deltas that rebuild it', async () => {
    const original = pseudoRandomBytes(8 * MiB, 13);
    const edited = insertMiddle(original, pseudoRandomBytes(1024, 14));
    const first = await uploadBytes(server.app, alice.auth, 'patched.bin', original);
    await uploadBytes(server.app, alice.auth, 'patched.bin', edited);
    const answer = await server.app.inject({
      url: `/api/v1/files/patch?path=patched.bin&base=${first.status.version!.id}`,
      headers: alice.auth,
    });
    expect(answer.statusCode, answer.body).toBe(200);
    const patch = answer.json<VersionPatch>();
    const base = (await prepareUpload('patched.bin', original)).fingerprint.chunks.map(({ hash, length }) => ({ hash, length }));
    const manifest = applyManifestDiff(
      base,
      decodeManifestDiff(Buffer.from(patch.manifestDiff, 'base64'), MAX_MANIFEST_CHUNKS),
      MAX_MANIFEST_CHUNKS,
    );
    const whole = await server.app.inject({ url: '/api/v1/files/manifest?path=patched.bin', headers: alice.auth });
    expect(manifest).toEqual(decodeManifest(Buffer.from(whole.json().manifest, 'base64'), MAX_MANIFEST_CHUNKS));
    // Rebuild the file from the base's bytes and the deltas alone.
    const offsets = (m: typeof manifest) => m.reduce<number[]>((all, entry) => [...all, all.at(-1)! + entry.length], [0]);
    const baseOffsets = offsets(base);
    const targetOffsets = offsets(manifest);
    const rebuilt = Buffer.alloc(edited.length);
    const covered = new Set<number>();
    let deltaBytes = 0;
    for (const region of patch.deltas) {
      const delta = Buffer.from(region.delta, 'base64');
      deltaBytes += delta.length;
      const from = original.subarray(baseOffsets[region.baseStart], baseOffsets[region.baseStart + region.baseCount]);
      applyDelta(from, delta, edited.length).copy(rebuilt, targetOffsets[region.start]);
      for (let i = region.start; i < region.start + region.count; i++) covered.add(i);
    }
    for (const [i, entry] of manifest.entries()) {
      if (covered.has(i)) continue;
      const at = base.findIndex((b) => b.hash === entry.hash);
      original.copy(rebuilt, targetOffsets[i], baseOffsets[at], baseOffsets[at]! + entry.length);
    }
    expect(rebuilt.equals(edited)).toBe(true);
    expect(deltaBytes).toBeLessThan(1024 + 256);
  });

  it("answers a patch against another user's version as not found", async () => {
    const bytes = pseudoRandomBytes(MiB, 15);
    const bobsFirst = await uploadBytes(server.app, bob.auth, 'mine.bin', bytes);
    await uploadBytes(server.app, alice.auth, 'mine.bin', bytes);
    const answer = await server.app.inject({
      url: `/api/v1/files/patch?path=mine.bin&base=${bobsFirst.status.version!.id}`,
      headers: alice.auth,
    });
    expect(answer.statusCode).toBe(404);
  });
});
