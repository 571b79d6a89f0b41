import { randomBytes } from 'node:crypto';
import { Client as S3Client } from 'minio';
import { inject } from 'vitest';
import { createPostgresDatabase } from './databases.js';
import { deleteStreams, NATS_URL } from './nats.js';
import { deleteRedisKeys, REDIS_TEST_URL } from './redis.js';
import { S3RVER_CREDENTIALS } from './s3rver.js';

/**
 * Which backends the suite runs on: `npm test` runs it twice, once as it is (the embedded
 * backends: files on disk, the SQLite bus, in-process state) and once with
 * PHOTOVAULT_TEST_BACKENDS=cluster, where every server the tests build or start also uses Redis,
 * NATS JetStream and S3 (an s3rver the run starts, test/support/global-setup.ts), and every
 * server the end-to-end tests start uses PostgreSQL. Database-backed suites run on SQLite and
 * PostgreSQL in both runs.
 */
export const CLUSTER_BACKENDS = process.env.PHOTOVAULT_TEST_BACKENDS === 'cluster';

/** Config keys of a set of cluster backends of its own, and how to remove everything in them. */
export interface ClusterBackends {
  /** `redis`, `nats` and `s3` sections, shaped like the server config. */
  config: { redis: { url: string; keyPrefix: string }; nats: { url: string; prefix: string }; s3: Record<string, string> };
  /** The same as PHOTOVAULT_* variables, with PHOTOVAULT_DATABASE_URL when a database was made. */
  env: Record<string, string>;
  drop(): Promise<void>;
}

/**
 * Redis, NATS and S3 namespaces no other test shares (a key prefix, a stream prefix, bucket
 * names), plus a fresh PostgreSQL database when `withDatabase`.
 */
export async function createClusterBackends(options: { withDatabase?: boolean } = {}): Promise<ClusterBackends> {
  const id = `pvtest-${randomBytes(5).toString('hex')}`;
  const endpoint = inject('s3Endpoint');
  const config = {
    redis: { url: REDIS_TEST_URL, keyPrefix: `${id}:` },
    nats: { url: NATS_URL, prefix: id },
    s3: { endpoint, ...S3RVER_CREDENTIALS, bucketPrefix: `${id}-` },
  };
  const database = options.withDatabase ? await createPostgresDatabase() : null;
  const env: Record<string, string> = {
    PHOTOVAULT_REDIS_URL: config.redis.url,
    PHOTOVAULT_REDIS_KEY_PREFIX: config.redis.keyPrefix,
    PHOTOVAULT_NATS_URL: config.nats.url,
    PHOTOVAULT_NATS_PREFIX: config.nats.prefix,
    PHOTOVAULT_S3_ENDPOINT: endpoint,
    PHOTOVAULT_S3_ACCESS_KEY: S3RVER_CREDENTIALS.accessKey,
    PHOTOVAULT_S3_SECRET_KEY: S3RVER_CREDENTIALS.secretKey,
    PHOTOVAULT_S3_BUCKET_PREFIX: config.s3.bucketPrefix,
    ...(database ? { PHOTOVAULT_DATABASE_URL: database.url } : {}),
  };
  return {
    config,
    env,
    drop: async () => {
      await Promise.all([
        database?.drop(),
        deleteRedisKeys(config.redis.keyPrefix),
        deleteStreams(config.nats.prefix),
        deleteBuckets(endpoint, config.s3.bucketPrefix),
      ]);
    },
  };
}

/** Removes the S3 buckets whose names start with prefix, with everything in them. */
async function deleteBuckets(endpoint: string, prefix: string): Promise<void> {
  const url = new URL(endpoint);
  const s3 = new S3Client({
    endPoint: url.hostname,
    port: Number(url.port),
    useSSL: url.protocol === 'https:',
    ...S3RVER_CREDENTIALS,
  });
  for (const { name } of await s3.listBuckets()) {
    if (!name.startsWith(prefix)) continue;
    const keys: string[] = [];
    for await (const item of s3.listObjectsV2(name, '', true)) if (item.name) keys.push(item.name);
    // One at a time: s3rver's bulk delete races with itself (test/support/s3rver.ts).
    for (const key of keys) await s3.removeObject(name, key);
    await s3.removeBucket(name);
  }
}

declare module 'vitest' {
  export interface ProvidedContext {
    /** The S3 endpoint of the cluster run (empty in the embedded run). */
    s3Endpoint: string;
  }
}
