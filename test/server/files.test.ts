import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FILE_RECORDS_TYPE, readFileRecords, recordContent } from '../../src/core/file-records.js';
import { type ContentRecordHeader, type FileEntry, type FileList, WHOLE_FILE_MAX_BYTES } from '../../src/core/protocol.js';
import { objectKey } from '../../src/infra/blobs/object-keys.js';
import { describeEachDatabase } from '../support/databases.js';
import { createTestServer, type TestServer } from '../support/server.js';
import { download, pseudoRandomBytes, uploadBytes } from '../support/uploads.js';

describeEachDatabase('files API', (kind) => {
  let server: TestServer;
  let auth: { authorization: string };

  beforeAll(async () => {
    server = await createTestServer(kind);
    auth = (await server.login('alice')).auth;
  });
  afterAll(async () => {
    await server.close();
  });

  const get = (url: string, headers: Record<string, string> = {}) => server.app.inject({ url, headers: { ...auth, ...headers } });
  const del = (url: string) => server.app.inject({ method: 'DELETE', url, headers: auth });

  it('gives the manifests of several files in one request, as GET /files/manifest would, and each missing one its error alone', async () => {
    const big = pseudoRandomBytes(600_000, 70);
    await uploadBytes(server.app, auth, 'manifests/big.bin', big);
    await uploadBytes(server.app, auth, 'manifests/deeper/small.txt', Buffer.from('small'));
    await uploadBytes(server.app, auth, 'manifests/empty.txt', Buffer.alloc(0));
    await uploadBytes(server.app, auth, 'manifests/edited.bin', Buffer.from('first'));
    await uploadBytes(server.app, auth, 'manifests/edited.bin', Buffer.from('second'));
    const paths = ['manifests/big.bin', 'manifests/deeper/small.txt', 'manifests/empty.txt', 'manifests/edited.bin'];
    const answer = await server.app.inject({
      method: 'POST',
      url: '/api/v1/files/manifests',
      headers: auth,
      payload: { paths: [...paths, 'manifests/none.bin', 'manifests/deeper', '../escape'] },
    });
    expect(answer.statusCode, answer.body).toBe(200);
    const { manifests } = answer.json<{ manifests: { path: string; code?: string }[] }>();
    for (const [at, path] of paths.entries()) {
      const one = (await get(`/api/v1/files/manifest?path=${encodeURIComponent(path)}`)).json();
      expect(manifests[at]).toEqual({ path, ...one });
    }
    expect(manifests.slice(paths.length)).toEqual([
      expect.objectContaining({ path: 'manifests/none.bin', code: 'PV_NOT_FOUND' }),
      expect.objectContaining({ path: 'manifests/deeper', code: 'PV_NOT_FOUND' }),
      expect.objectContaining({ path: '../escape', code: 'PV_PATH_INVALID' }),
    ]);
    const empty = await server.app.inject({ method: 'POST', url: '/api/v1/files/manifests', headers: auth, payload: { paths: [] } });
    expect(empty.statusCode).toBe(400);
  });

  it("never gives another user's manifests", async () => {
    await uploadBytes(server.app, auth, 'manifests/private.bin', Buffer.from('private'));
    const bob = await server.login('bob');
    const answer = await server.app.inject({
      method: 'POST',
      url: '/api/v1/files/manifests',
      headers: bob.auth,
      payload: { paths: ['manifests/private.bin'] },
    });
    expect(answer.json().manifests).toEqual([expect.objectContaining({ path: 'manifests/private.bin', code: 'PV_NOT_FOUND' })]);
  });

  const contents = (versions: string[], headers = auth) =>
    server.app.inject({ method: 'POST', url: '/api/v1/files/contents', headers, payload: { versions } });
  /** The records of a POST /files/contents answer, read as a client reads them, content as one buffer each. */
  const recordsOf = async (body: Buffer) => {
    const records: { header: ContentRecordHeader; content: Buffer }[] = [];
    for await (const record of readFileRecords<ContentRecordHeader>(Readable.from([body]), {
      records: 64,
      recordBytes: WHOLE_FILE_MAX_BYTES,
    })) {
      records.push({ header: record.header, content: recordContent(record) });
    }
    return records;
  };

  it('gives the contents of several versions in one body, one record each in the order asked, byte for byte', async () => {
    const files = [
      ['contents/a.bin', pseudoRandomBytes(300_000, 71)],
      ['contents/empty.txt', Buffer.alloc(0)],
      ['contents/deeper/b.txt', Buffer.from('bee')],
    ] as const;
    const versions: string[] = [];
    for (const [path, bytes] of files) versions.push((await uploadBytes(server.app, auth, path, bytes)).status.version!.id);
    const old = versions[2]!;
    versions[2] = (await uploadBytes(server.app, auth, 'contents/deeper/b.txt', Buffer.from('bee, edited'))).status.version!.id;
    // An old version, and one asked for twice, come like any other.
    const asked = [versions[2], versions[0]!, versions[1]!, old, versions[0]!];
    const expected = [Buffer.from('bee, edited'), files[0][1], files[1][1], Buffer.from('bee'), files[0][1]];
    const answer = await contents(asked);
    expect(answer.statusCode, answer.body).toBe(200);
    expect(answer.headers['content-type']).toBe(FILE_RECORDS_TYPE);
    const records = await recordsOf(answer.rawPayload);
    expect(records.map((record) => record.header.versionId)).toEqual(asked);
    for (const [at, { header, content }] of records.entries()) {
      expect(content.equals(expected[at]!)).toBe(true);
      expect(header).toEqual({ versionId: asked[at], size: expected[at]!.length, contentHash: sha256(expected[at]!) });
    }
  });

  it("answers an unknown version and another user's alike, PV_NOT_FOUND records, and the others whole", async () => {
    const mine = (await uploadBytes(server.app, auth, 'contents/mine.txt', Buffer.from('mine'))).status.version!.id;
    const bob = await server.login('bob');
    const bobs = (await uploadBytes(server.app, bob.auth, 'contents/bobs.txt', Buffer.from("bob's"))).status.version!.id;
    const records = await recordsOf((await contents([bobs, 'no-such-version', mine])).rawPayload);
    expect(records.map((record) => record.header)).toEqual([
      { versionId: bobs, size: 0, code: 'PV_NOT_FOUND', detail: `No version ${bobs}.` },
      { versionId: 'no-such-version', size: 0, code: 'PV_NOT_FOUND', detail: 'No version no-such-version.' },
      { versionId: mine, contentHash: sha256(Buffer.from('mine')), size: 4 },
    ]);
    expect(records[2]!.content.toString()).toBe('mine');
  });

  it('answers a version too large to travel with others, or whose object is missing, with an empty record saying so', async () => {
    const large = await uploadBytes(server.app, auth, 'contents/large.bin', pseudoRandomBytes(WHOLE_FILE_MAX_BYTES + 1, 72));
    const lost = await uploadBytes(server.app, auth, 'contents/lost.bin', pseudoRandomBytes(20_000, 73));
    await server.context.blobs.delete('uploads', objectKey(lost.status.version!.contentHash));
    const kept = await uploadBytes(server.app, auth, 'contents/kept.txt', Buffer.from('kept'));
    const asked = [large, lost, kept].map(({ status }) => status.version!.id);
    const records = await recordsOf((await contents(asked)).rawPayload);
    expect(records.map((record) => record.header)).toEqual([
      expect.objectContaining({ versionId: asked[0], size: 0, code: 'PV_PAYLOAD_TOO_LARGE' }),
      expect.objectContaining({ versionId: asked[1], size: 0, code: 'PV_NOT_FOUND' }),
      { versionId: asked[2], contentHash: sha256(Buffer.from('kept')), size: 4 },
    ]);
  });

  it('breaks the body off when an object turns out shorter than its version, so no record after it is misread', async () => {
    const before = await uploadBytes(server.app, auth, 'contents/before.txt', Buffer.from('before'));
    const short = await uploadBytes(server.app, auth, 'contents/short.bin', pseudoRandomBytes(20_000, 74));
    const key = objectKey(short.status.version!.contentHash);
    await server.context.blobs.delete('uploads', key);
    await server.context.blobs.put('uploads', key, Readable.from([pseudoRandomBytes(10_000, 74)]));
    const after = await uploadBytes(server.app, auth, 'contents/after.txt', Buffer.from('after'));
    // The response is destroyed mid-body (inject's name for a reset connection): the client then fetches those files alone.
    await expect(contents([before, short, after].map(({ status }) => status.version!.id))).rejects.toMatchObject({
      code: 'LIGHT_ECONNRESET',
    });
  });

  it('refuses more versions than one body may carry, or none', async () => {
    const tooMany = Array.from({ length: 65 }, (_, at) => `v${at}`);
    expect((await contents(tooMany)).json()).toMatchObject({ status: 400, code: 'PV_INVALID_INPUT' });
    expect((await contents([])).statusCode).toBe(400);
    expect((await contents(tooMany.slice(0, 64))).statusCode).toBe(200);
  });

  it('lists a folder in pages, folders and files together in name order', async () => {
    for (const name of ['e', 'a', 'c', 'b', 'd']) await uploadBytes(server.app, auth, `paged/${name}.txt`, Buffer.from(name));
    await uploadBytes(server.app, auth, 'paged/sub/inner.txt', Buffer.from('inner'));
    const names: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: FileList = (await get(`/api/v1/files?dir=paged&limit=2${cursor ? `&cursor=${cursor}` : ''}`)).json();
      names.push(...page.entries.map((e) => e.name));
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    expect(names).toEqual(['a.txt', 'b.txt', 'c.txt', 'd.txt', 'e.txt', 'sub']);
    expect(pages).toBe(3);
    const root: FileList = (await get('/api/v1/files')).json();
    expect(root.entries).toContainEqual(expect.objectContaining({ name: 'paged', kind: 'folder' }));
    expect((await get('/api/v1/files?dir=paged/a.txt')).statusCode).toBe(404);
  });

  it('serves byte ranges, ETags and conditional requests', async () => {
    const bytes = pseudoRandomBytes(100_000, 5);
    await uploadBytes(server.app, auth, 'range.bin', bytes);
    const whole = await download(server.app, auth, 'range.bin');
    expect(whole.headers['accept-ranges']).toBe('bytes');
    expect(whole.headers['x-content-type-options']).toBe('nosniff');
    expect(Number(whole.headers['content-length'])).toBe(bytes.length);
    const etag = String(whole.headers.etag);

    const part = await download(server.app, auth, 'range.bin', { range: 'bytes=1000-1999' });
    expect(part.statusCode).toBe(206);
    expect(part.headers['content-range']).toBe(`bytes 1000-1999/${bytes.length}`);
    expect(part.rawPayload.equals(bytes.subarray(1000, 2000))).toBe(true);

    const tail = await download(server.app, auth, 'range.bin', { range: 'bytes=-10' });
    expect(tail.rawPayload.equals(bytes.subarray(-10))).toBe(true);

    const outside = await download(server.app, auth, 'range.bin', { range: 'bytes=200000-' });
    expect(outside.statusCode).toBe(416);
    expect(outside.headers['content-range']).toBe(`bytes */${bytes.length}`);

    expect((await download(server.app, auth, 'range.bin', { 'if-none-match': etag })).statusCode).toBe(304);
    const stale = await download(server.app, auth, 'range.bin', { range: 'bytes=0-9', 'if-range': '"0000"' });
    expect(stale.statusCode).toBe(200);
    expect(stale.rawPayload.length).toBe(bytes.length);
  });

  it('keeps versions and serves an old one by id', async () => {
    await uploadBytes(server.app, auth, 'doc.txt', Buffer.from('first'));
    server.clock.advance(1000);
    await uploadBytes(server.app, auth, 'doc.txt', Buffer.from('second'));
    const versions = (await get('/api/v1/files/versions?path=doc.txt')).json();
    expect(versions).toHaveLength(2);
    const old = await get(`/api/v1/files/content?path=doc.txt&version=${versions[1].id}`);
    expect(old.body).toBe('first');
    expect((await get('/api/v1/files/content?path=doc.txt')).body).toBe('second');
    expect((await get('/api/v1/files/content?path=doc.txt&version=no-such-version')).statusCode).toBe(404);
  });

  it('re-uploading the content a file already has adds no version', async () => {
    await uploadBytes(server.app, auth, 'same.txt', Buffer.from('same'));
    await uploadBytes(server.app, auth, 'same.txt', Buffer.from('same'));
    expect((await get('/api/v1/files/versions?path=same.txt')).json()).toHaveLength(1);
  });

  it('moves a folder to the trash with everything in it and restores it in one go', async () => {
    await uploadBytes(server.app, auth, 'album/one.jpg', Buffer.from('1'));
    await uploadBytes(server.app, auth, 'album/deeper/two.jpg', Buffer.from('2'));
    await uploadBytes(server.app, auth, 'album-other/three.jpg', Buffer.from('3'));
    const trashed = (await del('/api/v1/files?path=album')).json();
    expect(trashed).toMatchObject({ path: 'album', kind: 'folder', size: 2 });
    expect((await get('/api/v1/files/stat?path=album/deeper/two.jpg')).statusCode).toBe(404);
    // A sibling whose name merely starts the same is untouched.
    expect((await get('/api/v1/files/stat?path=album-other/three.jpg')).statusCode).toBe(200);
    expect((await get('/api/v1/trash')).json()).toContainEqual(expect.objectContaining({ id: trashed.id, path: 'album' }));

    const restored = await server.app.inject({ method: 'POST', url: `/api/v1/trash/${trashed.id}/restore`, headers: auth });
    expect(restored.statusCode).toBe(200);
    expect((await download(server.app, auth, 'album/deeper/two.jpg')).body).toBe('2');
    expect((await get('/api/v1/trash')).json()).not.toContainEqual(expect.objectContaining({ id: trashed.id }));
  });

  it('refuses to restore over a file that took the place, losing nothing', async () => {
    await uploadBytes(server.app, auth, 'clash.txt', Buffer.from('old'));
    const trashed = (await del('/api/v1/files?path=clash.txt')).json();
    await uploadBytes(server.app, auth, 'clash.txt', Buffer.from('new'));
    const answer = await server.app.inject({ method: 'POST', url: `/api/v1/trash/${trashed.id}/restore`, headers: auth });
    expect(answer.statusCode).toBe(409);
    expect(answer.json()).toMatchObject({ code: 'PV_CONFLICT', fix: expect.any(String) });
    expect((await download(server.app, auth, 'clash.txt')).body).toBe('new');
    expect((await get('/api/v1/trash')).json()).toContainEqual(expect.objectContaining({ id: trashed.id }));
  });

  it('emptying the trash deletes the objects no version needs any more', async () => {
    const bytes = pseudoRandomBytes(50_000, 9);
    const { status } = await uploadBytes(server.app, auth, 'doomed.bin', bytes);
    const hash = status.version!.contentHash;
    expect(await server.context.blobs.head('uploads', objectKey(hash))).not.toBeNull();
    await del('/api/v1/files?path=doomed.bin');
    expect(await server.context.blobs.head('uploads', objectKey(hash))).not.toBeNull();
    expect((await server.app.inject({ method: 'DELETE', url: '/api/v1/trash', headers: auth })).statusCode).toBe(200);
    expect(await server.context.blobs.head('uploads', objectKey(hash))).toBeNull();
    expect(await server.context.db.selectFrom('objects').select('hash').where('hash', '=', hash).execute()).toEqual([]);
    expect((await get('/api/v1/trash')).json()).toEqual([]);
  });

  it('purges trash past its retention period, and only that', async () => {
    await uploadBytes(server.app, auth, 'old-trash.txt', Buffer.from('old trash'));
    await del('/api/v1/files?path=old-trash.txt');
    server.clock.advance(31 * 86_400_000);
    auth = (await server.login('alice')).auth;
    await uploadBytes(server.app, auth, 'new-trash.txt', Buffer.from('new trash'));
    await del('/api/v1/files?path=new-trash.txt');
    await server.context.files.purgeExpiredTrash();
    const left = (await get('/api/v1/trash')).json().map((e: { path: string }) => e.path);
    expect(left).toEqual(['new-trash.txt']);
  });

  it('stats files and answers 404 for what is not there', async () => {
    await uploadBytes(server.app, auth, 'stat/me.txt', Buffer.from('me'));
    const entry: FileEntry = (await get('/api/v1/files/stat?path=stat/me.txt')).json();
    expect(entry).toMatchObject({ path: 'stat/me.txt', kind: 'file', size: 2, mtime: 1_700_000_000_000 });
    const missing = await get('/api/v1/files/stat?path=stat/none.txt');
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({
      type: 'urn:photovault:error:PV_NOT_FOUND',
      title: 'Not Found',
      status: 404,
      code: 'PV_NOT_FOUND',
    });
  });

  it('moves a folder with everything in it, and renames a file, keeping versions', async () => {
    await uploadBytes(server.app, auth, 'trip/day1/a.jpg', Buffer.from('a'));
    await uploadBytes(server.app, auth, 'trip/day1/a.jpg', Buffer.from('a2'));
    await uploadBytes(server.app, auth, 'trip/b.jpg', Buffer.from('b'));
    await uploadBytes(server.app, auth, 'trip-not-inside/c.jpg', Buffer.from('c'));
    const move = (from: string, to: string) =>
      server.app.inject({ method: 'POST', url: '/api/v1/files/move', headers: auth, payload: { from, to } });

    const moved = await move('trip', 'albums/2024/trip');
    expect(moved.statusCode).toBe(200);
    expect(moved.json()).toMatchObject({ path: 'albums/2024/trip', kind: 'folder' });
    expect((await download(server.app, auth, 'albums/2024/trip/day1/a.jpg')).body).toBe('a2');
    expect((await get('/api/v1/files/versions?path=albums/2024/trip/day1/a.jpg')).json()).toHaveLength(2);
    expect((await get('/api/v1/files/stat?path=trip/b.jpg')).statusCode).toBe(404);
    expect((await get('/api/v1/files/stat?path=trip-not-inside/c.jpg')).statusCode).toBe(200);

    expect((await move('albums/2024/trip/b.jpg', 'albums/2024/trip/renamed.jpg')).json()).toMatchObject({ name: 'renamed.jpg' });
    expect((await download(server.app, auth, 'albums/2024/trip/renamed.jpg')).body).toBe('b');
  });

  it('refuses moves onto an existing path, into the folder itself, or of nothing', async () => {
    await uploadBytes(server.app, auth, 'mv/x.txt', Buffer.from('x'));
    await uploadBytes(server.app, auth, 'mv/y.txt', Buffer.from('y'));
    const move = (from: string, to: string) =>
      server.app.inject({ method: 'POST', url: '/api/v1/files/move', headers: auth, payload: { from, to } });
    expect((await move('mv/x.txt', 'mv/y.txt')).json()).toMatchObject({ code: 'PV_CONFLICT' });
    expect((await move('mv', 'mv/inner')).json()).toMatchObject({ code: 'PV_INVALID_INPUT' });
    expect((await move('mv/none.txt', 'mv/z.txt')).statusCode).toBe(404);
    expect((await move('mv/x.txt', '../escape')).json()).toMatchObject({ code: 'PV_PATH_INVALID' });
    expect((await download(server.app, auth, 'mv/y.txt')).body).toBe('y');
  });
});

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}
