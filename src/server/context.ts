import { join, resolve } from 'node:path';
import { BUCKETS, type Bucket } from '../core/buckets.js';
import type { ServerConfig } from '../core/config.js';
import type { BlobStore } from '../infra/blobs/blob-store.js';
import { FsBlobStore, fsBucketRoots } from '../infra/blobs/fs.blob-store.js';
import { FsStagingArea } from '../infra/blobs/fs.staging-area.js';
import type { StagingArea } from '../infra/blobs/staging-area.js';
import type { EventBus } from '../infra/bus/event-bus.js';
import type { WorkerCatalog } from '../workers/processing.worker.js';
import { TieringJob } from '../workers/tiering/tiering.job.js';
import { SqliteEventBus } from '../infra/bus/sqlite.event-bus.js';
import { type Db, openDatabase } from '../infra/db/database.js';
import { Leases } from '../infra/db/leases.js';
import type { KvStore } from '../infra/kv/kv-store.js';
import { MemoryKvStore } from '../infra/kv/memory.kv-store.js';
import { FilesRepository } from './files/files.repository.js';
import { FilesService } from './files/files.service.js';
import { VersionDeltas } from './files/version-deltas.js';
import { ProcessingRepository } from './processing/processing.repository.js';
import { ProcessingService } from './processing/processing.service.js';
import { IntegrityService } from './storage/integrity.service.js';
import { ObjectsRepository } from './storage/objects.repository.js';
import { ServerMetrics } from './http/metrics.js';
import { ChangeFeedRepository } from './sync/change-feed.repository.js';
import { ChangeNotifier } from './sync/change-notifier.js';
import { SyncService } from './sync/sync.service.js';
import { UploadRepository } from './upload/upload.repository.js';
import { UploadService } from './upload/upload.service.js';
import { UserRepository } from './user/user.repository.js';
import { UserService } from './user/user.service.js';

/** Everything a running server is made of, built from the config in one place. */
export interface ServerContext {
  config: ServerConfig;
  db: Db;
  blobs: BlobStore;
  staging: StagingArea;
  kv: KvStore;
  bus: EventBus;
  metrics: ServerMetrics;
  users: UserService;
  uploads: UploadService;
  files: FilesService;
  sync: SyncService;
  processing: ProcessingService;
  processingJobs: ProcessingRepository;
  filesRepository: FilesRepository;
  notifier: ChangeNotifier;
  tiering: TieringJob;
  integrity: IntegrityService;
  close(): Promise<void>;
}

export interface ContextOptions {
  /** The clock every service reads; tests move it to expire tokens and uploads. */
  now?: () => number;
}

/** The metadata database the config names: PostgreSQL when database.url is set, else SQLite in the data dir. */
export function openConfiguredDatabase(config: ServerConfig): Promise<Db> {
  return openDatabase(
    config.database.url
      ? { postgresUrl: config.database.url, poolSize: config.database.poolSize }
      : { sqliteFile: join(config.dataDir, 'photovault.db') },
  );
}

/** The folder of each bucket: storage.buckets.<bucket>.path (relative to the data dir), else <dataDir>/blobs/<bucket>. */
export function bucketRoots(config: ServerConfig): Record<Bucket, string> {
  const roots = fsBucketRoots(config.dataDir);
  for (const bucket of BUCKETS) {
    const path = config.storage.buckets[bucket]?.path;
    if (path !== undefined) roots[bucket] = resolve(config.dataDir, path);
  }
  return roots;
}

/** The blob store the config names. */
export function openConfiguredBlobStore(config: ServerConfig): Promise<FsBlobStore> {
  return FsBlobStore.open(bucketRoots(config));
}

/** The storage maintenance of a context: the tiering job and the verifier, on the same clock as everything else. */
function storageMaintenance(db: Db, blobs: BlobStore, config: ServerConfig, now: () => number) {
  const objects = new ObjectsRepository(db);
  return {
    tiering: new TieringJob(objects, blobs, new Leases(db, now), config.tiering, now),
    integrity: new IntegrityService(objects, blobs),
  };
}

export interface StorageAdministration {
  tiering: TieringJob;
  integrity: IntegrityService;
  close(): Promise<void>;
}

/**
 * Tiering and verify alone, for `photovault admin tier` and `photovault server verify` beside a
 * live server: the metadata and the blobs, without the bus or the services.
 */
export async function openStorageAdministration(config: ServerConfig, options: ContextOptions = {}): Promise<StorageAdministration> {
  const db = await openConfiguredDatabase(config);
  try {
    const blobs = await openConfiguredBlobStore(config);
    return {
      ...storageMaintenance(db, blobs, config, options.now ?? Date.now),
      close: async () => {
        await blobs.close();
        await db.destroy();
      },
    };
  } catch (error) {
    await db.destroy();
    throw error;
  }
}

/** The user service alone, for admin commands that run beside a live server (`photovault user`). */
export async function openUserAdministration(config: ServerConfig): Promise<{ users: UserService; close(): Promise<void> }> {
  const db = await openConfiguredDatabase(config);
  const kv = new MemoryKvStore();
  return {
    users: new UserService(new UserRepository(db), kv, config.auth),
    close: async () => {
      await kv.close();
      await db.destroy();
    },
  };
}

/** What the processing workers of this process ask of the metadata. */
export function workerCatalog(context: ServerContext): WorkerCatalog {
  return {
    bucketOf: (contentHash) => context.filesRepository.bucketOf(contentHash),
    stateOf: async (contentHash, job) => (await context.processingJobs.find(contentHash, job))?.state ?? null,
  };
}

/** The composition root: chooses the adapters from the config and hands them to the services. */
export async function createContext(config: ServerConfig, options: ContextOptions = {}): Promise<ServerContext> {
  const now = options.now ?? Date.now;
  const db = await openConfiguredDatabase(config);
  const blobs = await openConfiguredBlobStore(config);
  const staging = new FsStagingArea(blobs);
  const kv = new MemoryKvStore();
  const bus = await SqliteEventBus.open(join(config.dataDir, 'bus.db'));
  const metrics = new ServerMetrics();
  const changeFeed = new ChangeFeedRepository(db);
  const notifier = new ChangeNotifier();
  const filesRepository = new FilesRepository(db, changeFeed);
  const versionDeltas = new VersionDeltas(filesRepository, blobs);
  const files = new FilesService(filesRepository, blobs, notifier, versionDeltas, { trashDays: config.trash.retentionDays }, now);
  const processingJobs = new ProcessingRepository(db, changeFeed);
  return {
    config,
    db,
    blobs,
    staging,
    kv,
    bus,
    metrics,
    users: new UserService(new UserRepository(db), kv, config.auth, now),
    uploads: new UploadService(
      db,
      new UploadRepository(db),
      filesRepository,
      blobs,
      staging,
      bus,
      notifier,
      versionDeltas,
      config.uploads,
      metrics,
      now,
    ),
    notifier,
    sync: new SyncService(changeFeed, now),
    files,
    filesRepository,
    processingJobs,
    processing: new ProcessingService(processingJobs, files, filesRepository, blobs, bus, notifier, now),
    ...storageMaintenance(db, blobs, config, now),
    async close() {
      await bus.close();
      await kv.close();
      await staging.close();
      await blobs.close();
      await db.destroy();
    },
  };
}
