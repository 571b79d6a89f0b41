import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHUNK_MAX_SIZE, fingerprint } from '../../src/core/chunker.js';
import { ApiClient } from '../../src/daemon/api-client.js';
import { downloadReusingChunks } from '../../src/daemon/delta-download.js';
import { loadIgnoreRules } from '../../src/daemon/ignore-rules.js';
import { localChunksOf } from '../../src/daemon/local-chunks.js';
import { LocalIndex } from '../../src/daemon/local-index.js';
import { scanFolder } from '../../src/daemon/scanner.js';
import { describeEachDatabase } from '../support/databases.js';
import { createTestServer, type TestServer } from '../support/server.js';
import { pseudoRandomBytes, uploadBytes } from '../support/uploads.js';

describeEachDatabase('download reusing local chunks', (kind) => {
  let server: TestServer;
  let api: ApiClient;
  let auth: { authorization: string };
  let root: string;
  let index: LocalIndex;
  const original = pseudoRandomBytes(8 * 1024 * 1024, 21);
  const edited = Buffer.concat([original.subarray(0, 4 * 1024 * 1024), pseudoRandomBytes(1024, 22), original.subarray(4 * 1024 * 1024)]);

  beforeAll(async () => {
    server = await createTestServer(kind);
    const alice = await server.login('alice');
    auth = alice.auth;
    await server.app.listen({ host: '127.0.0.1', port: 0 });
    api = new ApiClient(`http://127.0.0.1:${(server.app.server.address() as { port: number }).port}`, alice.token);
    root = await mkdtemp(join(tmpdir(), 'pv-delta-'));
    index = await LocalIndex.open(join(root, '.photovault', 'index.db'));
    await uploadBytes(server.app, auth, 'video.bin', edited);
  });
  afterAll(async () => {
    await index.close();
    await api.close();
    await server.close();
    await rm(root, { recursive: true, force: true });
  });

  /** Scans as a sync pass does, letting go of files that went away. */
  const indexFolder = async () => {
    const scan = await scanFolder(root, index, { ignored: await loadIgnoreRules(root) });
    for (const file of scan.deleted) await index.remove(file.path);
  };

  it('fetches only the chunks around an edit when the old version is on disk', async () => {
    await writeFile(join(root, 'video.bin'), original);
    await indexFolder();
    const result = await downloadReusingChunks(api, 'video.bin', join(root, 'video.bin'), await localChunksOf(root, index));
    expect(await readFile(join(root, 'video.bin'))).toEqual(edited);
    expect(result.bytesReceived).toBeGreaterThan(0);
    expect(result.bytesReceived).toBeLessThanOrEqual(2 * CHUNK_MAX_SIZE);
    expect(result.bytesReceived + result.bytesReused).toBe(edited.length);
    expect((await readdir(root)).filter((name) => name.endsWith('.pvpart'))).toEqual([]);
  });

  it('fetches a file with nothing local whole, byte for byte, in writes of a megabyte', async () => {
    const target = join(root, 'fresh', 'video.bin');
    await mkdir(dirname(target), { recursive: true });
    const result = await downloadReusingChunks(api, 'video.bin', target, new Map());
    expect(result).toMatchObject({ bytesReceived: edited.length, bytesReused: 0 });
    expect(await readFile(target)).toEqual(edited);
    await rm(dirname(target), { recursive: true, force: true });
  });

  it('takes chunks from any local file, such as a renamed copy', async () => {
    await rm(join(root, 'video.bin'), { force: true });
    await writeFile(join(root, 'renamed.bin'), edited);
    await indexFolder();
    const result = await downloadReusingChunks(api, 'video.bin', join(root, 'video.bin'), await localChunksOf(root, index));
    expect(result).toMatchObject({ bytesReceived: 0, bytesReused: edited.length });
    expect(await readFile(join(root, 'video.bin'))).toEqual(edited);
  });

  it('fetches what a local file no longer holds since it was indexed', async () => {
    await rm(join(root, 'video.bin'), { force: true });
    await writeFile(join(root, 'renamed.bin'), edited);
    await indexFolder();
    const chunks = await localChunksOf(root, index);
    await writeFile(join(root, 'renamed.bin'), pseudoRandomBytes(edited.length, 99));
    const result = await downloadReusingChunks(api, 'video.bin', join(root, 'video.bin'), chunks);
    expect(result).toMatchObject({ bytesReceived: edited.length, bytesReused: 0 });
    expect(await readFile(join(root, 'video.bin'))).toEqual(edited);
  });

  describe('as a patch of the version on disk', () => {
    let baseVersionId: string;
    const manifestOf = async (bytes: Buffer) => (await fingerprint([bytes])).chunks.map(({ hash, length }) => ({ hash, length }));

    beforeAll(async () => {
      baseVersionId = (await uploadBytes(server.app, auth, 'patched.bin', original)).status.version!.id;
      await uploadBytes(server.app, auth, 'patched.bin', edited);
    });

    it('rebuilds the changed chunks from deltas against the old bytes, receiving about the inserted KiB', async () => {
      await rm(join(root, 'renamed.bin'), { force: true });
      await writeFile(join(root, 'patched.bin'), original);
      const base = { versionId: baseVersionId, manifest: await manifestOf(original) };
      const result = await downloadReusingChunks(api, 'patched.bin', join(root, 'patched.bin'), new Map(), { base });
      expect(await readFile(join(root, 'patched.bin'))).toEqual(edited);
      expect(result.bytesReceived).toBeGreaterThanOrEqual(1024);
      expect(result.bytesReceived).toBeLessThan(1024 + 512);
    });

    it('fetches the changed chunks by range when the old bytes on disk are not what the base says', async () => {
      await writeFile(join(root, 'patched.bin'), pseudoRandomBytes(original.length, 98));
      const base = { versionId: baseVersionId, manifest: await manifestOf(original) };
      const result = await downloadReusingChunks(api, 'patched.bin', join(root, 'patched.bin'), new Map(), { base });
      expect(await readFile(join(root, 'patched.bin'))).toEqual(edited);
      expect(result.bytesReceived).toBe(edited.length);
    });

    it('takes the whole manifest and fetches changed chunks whole when the server no longer knows the base version', async () => {
      await writeFile(join(root, 'patched.bin'), original);
      const base = { versionId: 'purged-long-ago', manifest: await manifestOf(original) };
      const result = await downloadReusingChunks(api, 'patched.bin', join(root, 'patched.bin'), new Map(), { base });
      expect(await readFile(join(root, 'patched.bin'))).toEqual(edited);
      expect(result.bytesReceived).toBeGreaterThan(1024 + 512);
      expect(result.bytesReceived).toBeLessThanOrEqual(2 * CHUNK_MAX_SIZE);
    });
  });
});
