import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { UploadStatus } from '../../src/core/protocol.js';
import { describeEachDatabase } from '../support/databases.js';
import { createTestServer, type TestServer } from '../support/server.js';
import { begin, commit, download, prepareUpload, pseudoRandomBytes, putChunk, uploadBytes } from '../support/uploads.js';

type Auth = { authorization: string };

/** A request as a given user; returns status and body for comparing answers. */
async function ask(app: FastifyInstance, auth: Auth, method: 'GET' | 'DELETE' | 'POST', url: string) {
  const answer = await app.inject({ method, url, headers: auth });
  return { status: answer.statusCode, body: answer.body };
}

/** Replaces the one varying part of a not-found message, the path, so answers can be compared. */
const withoutPath = (body: string, path: string) => body.replaceAll(path, '<path>');

describeEachDatabase("one user cannot reach another's files", (kind) => {
  let server: TestServer;
  let alice: Auth;
  let mallory: Auth;
  const secret = pseudoRandomBytes(700_000, 42);
  let aliceUploadId: string;
  let aliceTrashId: string;

  beforeAll(async () => {
    server = await createTestServer(kind);
    alice = (await server.login('alice')).auth;
    mallory = (await server.login('mallory')).auth;
    await uploadBytes(server.app, alice, 'private/diary.jpg', secret);
    await uploadBytes(server.app, alice, 'private/trashed.jpg', Buffer.from('gone'));
    aliceTrashId = (await server.app.inject({ method: 'DELETE', url: '/api/v1/files?path=private/trashed.jpg', headers: alice })).json().id;
    const pending = await prepareUpload('private/pending.jpg', pseudoRandomBytes(100_000, 43));
    aliceUploadId = (await begin(server.app, alice, pending.request)).json<UploadStatus>().uploadId!;
  });
  afterAll(async () => {
    await server.close();
  });

  it.each([
    ['list the folder', 'GET', '/api/v1/files?dir=private', '/api/v1/files?dir=nothing-here'],
    ['stat the file', 'GET', '/api/v1/files/stat?path=private/diary.jpg', '/api/v1/files/stat?path=nothing-here/x.jpg'],
    ['read the file', 'GET', '/api/v1/files/content?path=private/diary.jpg', '/api/v1/files/content?path=nothing-here/x.jpg'],
    ['list its versions', 'GET', '/api/v1/files/versions?path=private/diary.jpg', '/api/v1/files/versions?path=nothing-here/x.jpg'],
    ['delete the file', 'DELETE', '/api/v1/files?path=private/diary.jpg', '/api/v1/files?path=nothing-here/x.jpg'],
  ] as const)('cannot %s, and the answer is the one for a path that does not exist', async (_name, method, url, absentUrl) => {
    const answer = await ask(server.app, mallory, method, url);
    const absent = await ask(server.app, mallory, method, absentUrl);
    expect(answer.status).toBe(404);
    const path = new URL(url, 'http://x').searchParams.get('path') ?? new URL(url, 'http://x').searchParams.get('dir')!;
    const absentPath = new URL(absentUrl, 'http://x').searchParams.get('path') ?? new URL(absentUrl, 'http://x').searchParams.get('dir')!;
    expect(withoutPath(answer.body, path)).toBe(withoutPath(absent.body, absentPath));
    expect(answer.body).not.toContain(secret.subarray(0, 16).toString('hex'));
  });

  it("cannot use another user's upload or trash ids", async () => {
    for (const [method, url] of [
      ['GET', `/api/v1/uploads/${aliceUploadId}`],
      ['POST', `/api/v1/uploads/${aliceUploadId}/commit`],
      ['DELETE', `/api/v1/uploads/${aliceUploadId}`],
      ['POST', `/api/v1/trash/${aliceTrashId}/restore`],
    ] as const) {
      expect((await ask(server.app, mallory, method, url)).status).toBe(404);
    }
    const chunk = await putChunk(server.app, mallory, aliceUploadId, 'a'.repeat(64), Buffer.from('x'));
    expect(chunk.statusCode).toBe(404);
    expect((await server.app.inject({ url: '/api/v1/trash', headers: mallory })).json()).toEqual([]);
    // Alice's upload is untouched.
    expect((await ask(server.app, alice, 'GET', `/api/v1/uploads/${aliceUploadId}`)).status).toBe(200);
  });

  it('writes to the same path land in their own namespace, never over the other file', async () => {
    await uploadBytes(server.app, mallory, 'private/diary.jpg', Buffer.from('mallory was here'));
    expect((await download(server.app, alice, 'private/diary.jpg')).rawPayload.equals(secret)).toBe(true);
    expect((await download(server.app, mallory, 'private/diary.jpg')).body).toBe('mallory was here');
  });

  it('does not reveal through dedup that another user holds some content', async () => {
    const copy = await prepareUpload('mine.jpg', secret);
    const status = (await begin(server.app, mallory, copy.request)).json<UploadStatus>();
    // Exactly what a user who never uploaded anything would be asked for: every chunk.
    expect(status.state).toBe('pending');
    expect(status.missingBytes).toBe(secret.length);
    expect(new Set(status.missing)).toEqual(new Set(copy.fingerprint.chunks.map((c) => c.hash)));
  });

  it("cannot obtain another user's content by claiming its hash over other bytes", async () => {
    const alicesHash = (await server.app.inject({ url: '/api/v1/files/stat?path=private/diary.jpg', headers: alice })).json().contentHash;
    const junk = await prepareUpload('stolen.jpg', pseudoRandomBytes(secret.length, 7), { contentHash: alicesHash });
    const status = (await begin(server.app, mallory, junk.request)).json<UploadStatus>();
    expect(status.state).toBe('pending');
    for (const hash of status.missing) await putChunk(server.app, mallory, status.uploadId!, hash, junk.chunkBytes.get(hash)!);
    const answer = await commit(server.app, mallory, status.uploadId!);
    expect(answer.statusCode).toBe(422);
    expect((await download(server.app, mallory, 'stolen.jpg')).statusCode).toBe(404);
  });

  it("emptying one user's trash leaves content another user holds readable", async () => {
    const shared = pseudoRandomBytes(300_000, 77);
    await uploadBytes(server.app, alice, 'both/shared.bin', shared);
    await uploadBytes(server.app, mallory, 'both/shared.bin', shared);
    await server.app.inject({ method: 'DELETE', url: '/api/v1/files?path=both/shared.bin', headers: mallory });
    const emptied = await server.app.inject({ method: 'DELETE', url: '/api/v1/trash', headers: mallory });
    expect(emptied.json()).toEqual({ entries: expect.any(Number) });
    expect((await download(server.app, alice, 'both/shared.bin')).rawPayload.equals(shared)).toBe(true);
  });
});
