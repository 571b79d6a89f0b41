import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Change, ChangePage } from '../../src/core/protocol.js';
import { changeOf } from '../../src/server/files/files.repository.js';
import { ChangeFeedRepository } from '../../src/server/sync/change-feed.repository.js';
import { describeEachDatabase } from '../support/databases.js';
import { createTestServer, type TestServer } from '../support/server.js';
import { pseudoRandomBytes, uploadBytes } from '../support/uploads.js';

describeEachDatabase('change feed', (kind) => {
  let server: TestServer;
  let alice: Awaited<ReturnType<TestServer['login']>>;

  beforeAll(async () => {
    server = await createTestServer(kind);
    alice = await server.login('alice');
  });
  afterAll(async () => {
    await server.close();
  });

  const page = async (since: number, limit = 500, auth = alice.auth): Promise<ChangePage> =>
    (await server.app.inject({ url: `/api/v1/changes?since=${since}&limit=${limit}`, headers: auth })).json();

  /** Every change after since, following the pages. */
  const all = async (since: number, auth = alice.auth): Promise<Change[]> => {
    const changes: Change[] = [];
    for (let next = since, more = true; more;) {
      const answer = await page(next, 2, auth);
      changes.push(...answer.changes);
      ({ next, hasMore: more } = answer);
    }
    return changes;
  };

  it('numbers every change of the namespace in order: folders, versions, tombstones, restores', async () => {
    const start = (await page(0)).latest;
    const { status } = await uploadBytes(server.app, alice.auth, 'feed/a/one.txt', Buffer.from('one'));
    await uploadBytes(server.app, alice.auth, 'feed/a/one.txt', Buffer.from('one, edited'));
    const trashed = (await server.app.inject({ method: 'DELETE', url: '/api/v1/files?path=feed/a', headers: alice.auth })).json();
    await server.app.inject({ method: 'POST', url: `/api/v1/trash/${trashed.id}/restore`, headers: alice.auth });

    const changes = await all(start);
    expect(changes.map((c) => [c.kind, c.entryKind, c.path])).toEqual([
      ['upsert', 'folder', 'feed'],
      ['upsert', 'folder', 'feed/a'],
      ['upsert', 'file', 'feed/a/one.txt'],
      ['upsert', 'file', 'feed/a/one.txt'],
      ['delete', 'folder', 'feed/a'],
      ['upsert', 'folder', 'feed/a'],
      ['upsert', 'file', 'feed/a/one.txt'],
    ]);
    expect(changes.map((c) => c.seq)).toEqual(Array.from({ length: 7 }, (_, i) => start + i + 1));
    expect(changes[2]).toMatchObject({
      versionId: status.version!.id,
      contentHash: status.version!.contentHash,
      size: 3,
      deviceId: alice.principal.deviceId,
    });
    expect(changes[6]!.contentHash).toBe(changes[3]!.contentHash);
  });

  it('records a move as one change from the old path to the new', async () => {
    await uploadBytes(server.app, alice.auth, 'before/x.txt', Buffer.from('x'));
    const start = (await page(0)).latest;
    await server.app.inject({ method: 'POST', url: '/api/v1/files/move', headers: alice.auth, payload: { from: 'before', to: 'after' } });
    expect((await all(start)).map((c) => [c.kind, c.entryKind, c.fromPath, c.path])).toEqual([['move', 'folder', 'before', 'after']]);
  });

  it('gives every concurrent commit its own number, without gaps', async () => {
    const start = (await page(0)).latest;
    await Promise.all(
      Array.from({ length: 8 }, (_, i) => uploadBytes(server.app, alice.auth, `burst-${i}.bin`, pseudoRandomBytes(20_000, 100 + i))),
    );
    const changes = await all(start);
    expect(changes.map((c) => c.seq)).toEqual(Array.from({ length: 8 }, (_, i) => start + i + 1));
    expect(new Set(changes.map((c) => c.path)).size).toBe(8);
  });

  it('creates a new folder once when uploads into it commit at once', async () => {
    const start = (await page(0)).latest;
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        uploadBytes(server.app, alice.auth, `together/inner/f-${i}.bin`, pseudoRandomBytes(20_000, 200 + i)),
      ),
    );
    expect(answers.map((answer) => answer.status.state)).toEqual(Array(8).fill('committed'));
    const changes = await all(start);
    expect(changes.filter((c) => c.entryKind === 'folder').map((c) => c.path)).toEqual(['together', 'together/inner']);
    expect(changes.filter((c) => c.entryKind === 'file')).toHaveLength(8);
  });

  it('pages with next and hasMore, and an empty page past the end', async () => {
    const { latest } = await page(0);
    const first = await page(0, 3);
    expect(first.changes).toHaveLength(3);
    expect(first).toMatchObject({ next: 3, hasMore: true, latest });
    const end = await page(latest);
    expect(end).toEqual({ changes: [], latest, next: latest, hasMore: false });
  });

  it('leaves processing results out when asked, its last page still ending at the end of the feed', async () => {
    const start = (await page(0)).latest;
    await uploadBytes(server.app, alice.auth, 'feed/processed/photo.jpg', Buffer.from('not really a photo'));
    const file = await server.context.db
      .selectFrom('files')
      .selectAll()
      .where('dir', '=', 'feed/processed')
      .where('name', '=', 'photo.jpg')
      .executeTakeFirstOrThrow();
    // What the processing service appends when a job finishes (two of them here), then a second file.
    const feed = new ChangeFeedRepository(server.context.db);
    for (let i = 0; i < 2; i++) {
      await server.context.db.transaction().execute((trx) => feed.append(trx, changeOf(file, 'processed', null, Date.now())));
    }
    await uploadBytes(server.app, alice.auth, 'feed/processed/notes.txt', Buffer.from('notes'));
    const results = async () => {
      await server.context.db.transaction().execute((trx) => feed.append(trx, changeOf(file, 'processed', null, Date.now())));
      return (await page(0)).latest;
    };
    const latest = await results();
    const filtered = async (since: number, limit: number): Promise<ChangePage> =>
      (await server.app.inject({ url: `/api/v1/changes?since=${since}&limit=${limit}&exclude=processed`, headers: alice.auth })).json();

    expect((await all(start)).filter((c) => c.kind === 'processed')).toHaveLength(3);
    const first = await filtered(start, 2);
    expect(first.changes.map((c) => c.path)).toEqual(['feed/processed', 'feed/processed/photo.jpg']);
    expect(first).toMatchObject({ hasMore: true, next: first.changes[1]!.seq });
    const last = await filtered(first.next, 2);
    expect(last.changes.map((c) => [c.kind, c.path])).toEqual([['upsert', 'feed/processed/notes.txt']]);
    // Past the result that came last: a client's cursor reaches the end, so the device is in sync.
    expect(last).toMatchObject({ hasMore: false, next: latest, latest });
    expect(await filtered(latest, 2)).toEqual({ changes: [], latest, next: latest, hasMore: false });
    const refused = await server.app.inject({ url: '/api/v1/changes?since=0&exclude=upsert', headers: alice.auth });
    expect(refused.statusCode).toBe(400);
  });

  it('shows a user only their own changes', async () => {
    const bob = await server.login('bob');
    expect((await page(0, 500, bob.auth)).changes).toEqual([]);
    await uploadBytes(server.app, bob.auth, 'bob.txt', Buffer.from('bob'));
    const bobs = (await page(0, 500, bob.auth)).changes;
    expect(bobs.map((c) => c.seq)).toEqual([1]);
    expect((await all(0)).some((c) => c.path === 'bob.txt')).toBe(false);
  });

  it("keeps each device's cursor, never moving it back or past the feed", async () => {
    const { latest } = await page(0);
    const ack = (seq: number) => server.app.inject({ method: 'POST', url: '/api/v1/changes/ack', headers: alice.auth, payload: { seq } });
    expect((await ack(2)).json()).toEqual({ seq: 2 });
    expect((await ack(1)).json()).toEqual({ seq: 2 });
    expect((await ack(latest + 100)).json()).toEqual({ seq: latest });
    const devices = (await server.app.inject({ url: '/api/v1/devices', headers: alice.auth })).json();
    expect(devices).toContainEqual(expect.objectContaining({ id: alice.principal.deviceId, cursor: latest, inSync: true }));
  });
});
