import { join, resolve } from 'node:path';
import { BUCKETS, type Bucket } from '../core/buckets.js';
import type { ServerConfig } from '../core/config.js';
import type { BlobStore } from '../infra/blobs/blob-store.js';
import { FsBlobStore, fsBucketRoots } from '../infra/blobs/fs.blob-store.js';
import { FsStagingArea } from '../infra/blobs/fs.staging-area.js';
import type { StagingArea } from '../infra/blobs/staging-area.js';
import type { ChangeFanout } from '../infra/bus/change-fanout.js';
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
import { DevicePresence } from './sync/device-presence.js';
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
  /** Events and jobs, and the fan-out of sync signals between server processes. */
  bus: EventBus & ChangeFanout;
  metrics: ServerMetrics;
  users: UserService;
  uploads: UploadService;
  files: FilesService;
  sync: SyncService;
  processing: ProcessingService;
  processingJobs: ProcessingRepository;
  filesRepository: FilesRepository;
  notifier: ChangeNotifier;
  presence: DevicePresence;
  tiering: TieringJob;
  integrity: IntegrityService;
  close(): Promise<void>;
}

export interface ContextOptions {
  /** The clock every service reads; tests move it to expire tokens and uploads. */
  now?: () => number;
}

/**
 * Where backends report failures that no caller is waiting for (a dropped connection being
 * reopened, a fan-out announcement that could not be sent): stderr, beside the JSON log on stdout.
 */
function reportTo(backend: string): (error: unknown) => void {
  return (error) => console.error(`photovault: ${backend}:`, error);
}

/** The metadata database the config names: PostgreSQL when database.url is set, else SQLite in the data dir. */
export function openConfiguredDatabase(config: ServerConfig): Promise<Db> {
  return openDatabase(
    config.database.url
      ? { postgresUrl: config.database.url, poolSize: config.database.poolSize, onConnectionError: reportTo('PostgreSQL') }
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

/**
 * Object storage the config names: S3 when s3.endpoint is set (each bucket on s3.* or its own
 * storage.buckets.<bucket> endpoint, credentials and name), else a folder per bucket (bucketRoots).
 */
export async function openConfiguredStorage(config: ServerConfig): Promise<{ blobs: BlobStore; staging: StagingArea }> {
  const { endpoint, accessKey, secretKey, region, bucketPrefix } = config.s3;
  if (endpoint && accessKey && secretKey) {
    const { S3BlobStore, s3BucketLocations } = await import('../infra/blobs/s3.blob-store.js');
    const { S3StagingArea } = await import('../infra/blobs/s3.staging-area.js');
    const buckets = s3BucketLocations({ endpoint, accessKey, secretKey, region }, bucketPrefix);
    for (const bucket of BUCKETS) {
      const own = config.storage.buckets[bucket];
      if (!own) continue;
      const location = buckets[bucket];
      buckets[bucket] = {
        ...location,
        endpoint: own.endpoint ?? location.endpoint,
        accessKey: own.accessKey ?? location.accessKey,
        secretKey: own.secretKey ?? location.secretKey,
        bucket: own.name ?? location.bucket,
      };
    }
    const blobs = await S3BlobStore.open({ buckets });
    return { blobs, staging: new S3StagingArea(blobs) };
  }
  const blobs = await FsBlobStore.open(bucketRoots(config));
  return { blobs, staging: new FsStagingArea(blobs) };
}

/** The event bus the config names: NATS JetStream when nats.url is set, else the SQLite bus in the data dir. */
export async function openConfiguredBus(config: ServerConfig): Promise<EventBus & ChangeFanout> {
  if (config.nats.url) {
    const { NatsEventBus } = await import('../infra/bus/nats.event-bus.js');
    return NatsEventBus.open({ url: config.nats.url, prefix: config.nats.prefix, onError: reportTo('NATS') });
  }
  return SqliteEventBus.open(join(config.dataDir, 'bus.db'));
}

/** The key-value store the config names: Redis when redis.url is set, else process memory. */
export async function openConfiguredKv(config: ServerConfig): Promise<KvStore> {
  if (config.redis.url) {
    const { RedisKvStore } = await import('../infra/kv/redis.kv-store.js');
    return RedisKvStore.open({ url: config.redis.url, keyPrefix: config.redis.keyPrefix, onConnectionError: reportTo('Redis') });
  }
  return new MemoryKvStore();
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
    const { blobs, staging } = await openConfiguredStorage(config);
    return {
      ...storageMaintenance(db, blobs, config, options.now ?? Date.now),
      close: async () => {
        await staging.close();
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
  const kv = await openConfiguredKv(config).catch(async (error: unknown) => {
    await db.destroy();
    throw error;
  });
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
  // Each backend is opened in turn; when one fails (unreachable, misconfigured) those already
  // open are closed again, so the error ends the start instead of a hung pool keeping it alive.
  const opened: (() => Promise<void>)[] = [];
  const open = async <T>(opening: Promise<T>, close: (backend: T) => Promise<void>): Promise<T> => {
    try {
      const backend = await opening;
      opened.unshift(() => close(backend));
      return backend;
    } catch (error) {
      for (const closeBackend of opened) await closeBackend().catch(() => {});
      throw error;
    }
  };
  const db = await open(openConfiguredDatabase(config), (db) => db.destroy());
  const { blobs, staging } = await open(openConfiguredStorage(config), async (storage) => {
    await storage.staging.close();
    await storage.blobs.close();
  });
  const kv = await open(openConfiguredKv(config), (kv) => kv.close());
  const bus = await open(openConfiguredBus(config), (bus) => bus.close());
  const metrics = new ServerMetrics();
  const changeFeed = new ChangeFeedRepository(db);
  const notifier = new ChangeNotifier(bus, reportTo('sync fan-out'));
  await notifier.start();
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
    presence: new DevicePresence(kv),
    sync: new SyncService(changeFeed, now),
    files,
    filesRepository,
    processingJobs,
    processing: new ProcessingService(processingJobs, files, filesRepository, blobs, bus, notifier, now),
    ...storageMaintenance(db, blobs, config, now),
    async close() {
      notifier.stop();
      for (const closeBackend of opened) await closeBackend();
    },
  };
}
