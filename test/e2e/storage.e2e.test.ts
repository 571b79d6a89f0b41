import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import type { UploadSummary } from '../../src/daemon/uploader.js';
import { objectKey } from '../../src/infra/blobs/object-keys.js';
import type { VerifyReport } from '../../src/server/storage/integrity.service.js';
import type { TieringReport } from '../../src/workers/tiering/tiering.job.js';
import { CLUSTER_BACKENDS } from '../support/backends.js';
import { type CliResult, CliSandbox, describeResult } from '../support/cli.js';
import { CORPUS_DIR } from '../support/corpus.js';
import { TIME_SCALE } from '../support/time-scale.js';

/**
 * Storage maintenance end to end: real camera files uploaded to a running `photovault server
 * start`, aged in its database, moved by `photovault admin tier` (the cold tier on a folder of its
 * own, as on another disk), served from there, and checked by `photovault server verify`.
 */

// The exit codes scripts rely on (src/cli/exit-codes.ts, README); literal on purpose.
const EXIT_INTEGRITY = 7;
const PASSWORD = 'correct horse battery staple';
const DAY = 86_400_000;

interface CorpusFile {
  remotePath: string;
  absolutePath: string;
  hash: string;
  size: number;
}

async function corpusFolder(folder: string): Promise<CorpusFile[]> {
  const files: CorpusFile[] = [];
  for (const name of (await readdir(join(CORPUS_DIR, 'images', folder))).sort()) {
    const absolutePath = join(CORPUS_DIR, 'images', folder, name);
    const bytes = await readFile(absolutePath);
    files.push({
      remotePath: `photos/${folder}/${name}`,
      absolutePath,
      hash: createHash('sha256').update(bytes).digest('hex'),
      size: bytes.length,
    });
  }
  return files;
}

const bytesOf = (files: CorpusFile[]) => files.reduce((sum, file) => sum + file.size, 0);

/** Parses the JSON a command printed, whatever its exit code. */
function jsonOf<T>(result: CliResult): T {
  try {
    return JSON.parse(result.stdout) as T;
  } catch {
    throw new Error(`No JSON on stdout.\n${describeResult(result)}`);
  }
}

describe('photovault admin tier and server verify', () => {
  let sandbox: CliSandbox;

  beforeEach(async () => {
    sandbox = await CliSandbox.create();
  });
  afterEach(async () => {
    await sandbox.dispose();
  });

  it(
    'moves aged photos to the warm and cold tiers, serves them from there, and verifies every byte',
    async () => {
      const data = await sandbox.dir('data');
      const coldDisk = await sandbox.dir('cold-disk');
      await writeFile(join(data, 'config.json'), JSON.stringify({ storage: { buckets: { 'photos-cold': { path: coldDisk } } } }));
      const server = await sandbox.startServer(data);
      await sandbox.addUserAndLogin(server, data, 'alice', PASSWORD);
      const warm = await corpusFolder('cameras');
      const cold = await corpusFolder('gps');
      for (const folder of ['cameras', 'gps']) {
        const uploaded = await sandbox.json<UploadSummary>(['upload', join(CORPUS_DIR, 'images', folder), '--to', 'photos', '--json']);
        expect(uploaded.failed).toEqual([]);
      }

      // Age the objects in the database, as months going by would.
      const backends = await sandbox.openBackends(data);
      onTestFinished(() => backends.close());
      const age = (days: number, hash: string) =>
        backends.db
          .updateTable('objects')
          .set((eb) => ({ created_at: eb('created_at', '-', days * DAY) }))
          .where('hash', '=', hash)
          .execute();
      for (const file of warm) await age(40, file.hash);
      for (const file of cold) await age(200, file.hash);
      const expected = [
        { from: 'uploads', to: 'photos-warm', objects: warm.length, bytes: bytesOf(warm) },
        { from: 'uploads', to: 'photos-cold', objects: cold.length, bytes: bytesOf(cold) },
        { from: 'photos-warm', to: 'photos-cold', objects: 0, bytes: 0 },
      ];

      const dryRun = await sandbox.json<TieringReport>(['admin', 'tier', '--dry-run', '--json', '--data', data]);
      expect(dryRun).toMatchObject({ dryRun: true, ran: true, failures: [], transitions: expected });
      const tiered = await sandbox.json<TieringReport>(['admin', 'tier', '--json', '--data', data]);
      expect(tiered).toMatchObject({ dryRun: false, ran: true, failures: [], transitions: expected });
      const human = await sandbox.run(['admin', 'tier', '--data', data]);
      expect(human.code, describeResult(human)).toBe(0);
      expect(human.stdout).toContain('uploads -> photos-warm: moved 0 objects');

      // The cold tier holds them (embedded: the folder the config named); the running server reads from both tiers.
      for (const file of cold) {
        expect(await backends.blobs.head('photos-cold', objectKey(file.hash))).toEqual({ key: objectKey(file.hash), size: file.size });
        if (!CLUSTER_BACKENDS) await expect(readFile(join(coldDisk, ...objectKey(file.hash).split('/')))).resolves.toHaveLength(file.size);
      }
      const downloads = await sandbox.dir('downloads');
      for (const [i, file] of [warm[0]!, cold[0]!].entries()) {
        const out = join(downloads, `${i}.jpg`);
        expect(await sandbox.json<{ bytes: number }>(['get', file.remotePath, '--out', out, '--json'])).toMatchObject({ bytes: file.size });
        expect((await readFile(out)).equals(await readFile(file.absolutePath))).toBe(true);
      }

      const healthy = await sandbox.json<VerifyReport>(['server', 'verify', '--json', '--data', data]);
      expect(healthy).toMatchObject({
        ok: true,
        checked: { objects: warm.length + cold.length, bytes: bytesOf(warm) + bytesOf(cold) },
        counts: { mismatched: 0, missing: 0, orphans: 0 },
      });

      // One flipped bit in the cold tier, replaced unchecked as a failing disk would leave it.
      const damaged = cold[1]!;
      const chunks: Buffer[] = [];
      for await (const chunk of await backends.blobs.get('photos-cold', objectKey(damaged.hash))) chunks.push(chunk as Buffer);
      const flipped = Buffer.concat(chunks);
      flipped.writeUInt8(flipped.readUInt8(100) ^ 0x80, 100);
      await backends.blobs.put('photos-cold', objectKey(damaged.hash), Readable.from([flipped]));
      const broken = await sandbox.run(['server', 'verify', '--json', '--data', data]);
      expect(broken.code, describeResult(broken)).toBe(EXIT_INTEGRITY);
      const report = jsonOf<VerifyReport>(broken);
      expect(report.ok).toBe(false);
      expect(report.mismatched).toEqual([
        expect.objectContaining({ contentHash: damaged.hash, bucket: 'photos-cold', actualSize: damaged.size }),
      ]);
      const text = await sandbox.run(['server', 'verify', '--data', data]);
      expect(text.code).toBe(EXIT_INTEGRITY);
      expect(text.stdout).toContain(`mismatch: photos-cold: ${damaged.hash}`);

      await server.stop();
    },
    120_000 * TIME_SCALE,
  );
});
