import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { API_SERVICES, type ApiService, isApiService } from './api-services.js';
import { BUCKETS } from './buckets.js';
import { PvError } from './errors.js';

/**
 * The server's configuration: one schema for the config file, `PHOTOVAULT_*` environment
 * variables and command-line flags, validated once at start and frozen. Later layers win:
 * defaults < file < environment < flags. This module and client-config.ts are the only ones that read process.env.
 *
 * Each leaf maps to an environment variable named from its path: `server.port` is
 * PHOTOVAULT_SERVER_PORT, `database.url` is PHOTOVAULT_DATABASE_URL, `dataDir` is PHOTOVAULT_DATA_DIR.
 * (The client's few settings live in client-config.ts, so client commands need not load zod.)
 */
const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();
/** A boolean from JSON, or 'true'/'false' from the environment. */
const flag = z.union([z.boolean(), z.enum(['true', 'false']).transform((value) => value === 'true')]);

/**
 * Where one bucket lives. For now a folder (embedded mode); an S3 endpoint with its credentials
 * and bucket name will be the other choice, beside `path`.
 */
const bucketSettings = z.object({
  path: z
    .string()
    .min(1)
    .optional()
    .describe('Folder of the bucket (absolute, or relative to the data dir); default <dataDir>/blobs/<bucket>.'),
  // With s3.endpoint set, each bucket may live on an S3 endpoint of its own (a MinIO on slow disks for the cold tier).
  endpoint: z
    .string()
    .regex(/^https?:\/\//, 'must be an http:// or https:// URL')
    .optional()
    .describe("This bucket's S3 endpoint; default s3.endpoint."),
  accessKey: z.string().optional().describe("This bucket's S3 access key; default s3.accessKey."),
  secretKey: z.string().optional().describe("This bucket's S3 secret key; default s3.secretKey."),
  name: z.string().optional().describe("This bucket's S3 bucket name; default s3.bucketPrefix + the bucket."),
});
/**
 * The API services a server process serves: a list in JSON, comma-separated from the
 * environment or a flag. Deduplicated, as registering a service twice would fail.
 */
const serviceList = z
  .union([z.array(z.string()), z.string().transform((list) => list.split(','))])
  .transform((list) => [...new Set(list.map((name) => name.trim()).filter(Boolean))])
  .refine((list) => list.length > 0 && list.every(isApiService), {
    message: `must name one or more of ${API_SERVICES.join(', ')}, comma-separated`,
  })
  .transform((list) => list as ApiService[]);

type BucketSettingsShape = Record<(typeof BUCKETS)[number], z.ZodOptional<typeof bucketSettings>>;

export const serverConfigSchema = z.object({
  dataDir: z.string().min(1).describe('Folder holding the SQLite database, the blobs and the bus.'),
  server: z
    .object({
      host: z.string().min(1).default('0.0.0.0').describe('Address to listen on.'),
      port: port.default(8420).describe('TCP port to listen on; 0 picks a free one.'),
      trustProxy: z
        .string()
        .default('')
        .describe("Reverse proxies whose X-Forwarded-For is believed: '' none, '*' any, or comma-separated addresses/CIDRs."),
      services: serviceList
        .default([...API_SERVICES])
        .describe('API services this process serves (cluster form: a Deployment per service); default all of them.'),
    })
    .default({ host: '0.0.0.0', port: 8420, trustProxy: '', services: [...API_SERVICES] }),
  database: z
    .object({
      url: z
        .string()
        .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
        .optional()
        .describe('PostgreSQL URL for the cluster form; unset uses SQLite in the data dir.'),
      poolSize: positiveInt.default(10).describe('PostgreSQL connections per process.'),
    })
    .default({ poolSize: 10 }),
  redis: z
    .object({
      url: z
        .string()
        .regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL')
        .optional()
        .describe('Redis URL for the cluster form (rate limits, presence); unset keeps that state in process.'),
      keyPrefix: z.string().default('photovault:').describe('Prefix of every key, so deployments can share one Redis.'),
    })
    .default({ keyPrefix: 'photovault:' }),
  nats: z
    .object({
      url: z
        .string()
        .regex(/^(nats|tls):\/\//, 'must be a nats:// or tls:// URL')
        .optional()
        .describe('NATS JetStream URL for the cluster form (events, jobs, fan-out); unset uses the SQLite bus in the data dir.'),
      prefix: z
        .string()
        .regex(/^[a-z0-9]+(-[a-z0-9]+)*$/, 'lowercase letters and digits, words joined by single - (it becomes part of stream names)')
        .default('photovault')
        .describe('Prefix of stream, consumer and subject names, so deployments can share one NATS.'),
    })
    .default({ prefix: 'photovault' }),
  s3: z
    .object({
      endpoint: z
        .string()
        .regex(/^https?:\/\//, 'must be an http:// or https:// URL')
        .optional()
        .describe('S3 endpoint (MinIO) for the cluster form; unset stores objects as files in the data dir.'),
      accessKey: z.string().optional().describe('S3 access key.'),
      secretKey: z.string().optional().describe('S3 secret key.'),
      region: z.string().default('us-east-1').describe('S3 region.'),
      bucketPrefix: z
        .string()
        .regex(/^[a-z0-9.-]*$/, 'lowercase letters, digits, . and - only (S3 bucket names)')
        .default('photovault-')
        .describe('Prefix of the S3 bucket names: <prefix>uploads, <prefix>photos-warm, ...'),
    })
    .superRefine((s3, context) => {
      for (const key of ['accessKey', 'secretKey'] as const) {
        if (s3.endpoint && !s3[key]) context.addIssue({ code: 'custom', path: [key], message: 'required when s3.endpoint is set' });
      }
    })
    .default({ region: 'us-east-1', bucketPrefix: 'photovault-' }),
  uploads: z
    .object({
      expiryHours: positiveInt.default(24).describe('Hours an unfinished upload is kept after its last activity.'),
      maxFileBytes: positiveInt.default(64 * 1024 ** 3).describe('Largest file accepted, in bytes.'),
    })
    .default({ expiryHours: 24, maxFileBytes: 64 * 1024 ** 3 }),
  trash: z
    .object({
      retentionDays: positiveInt.default(30).describe('Days deleted files stay restorable before they are purged.'),
    })
    .default({ retentionDays: 30 }),
  auth: z
    .object({
      sessionDays: positiveInt.default(30).describe('Days a login session stays valid.'),
      loginAttempts: positiveInt.default(10).describe('Failed logins allowed per user and address in one window.'),
      loginWindowSeconds: positiveInt.default(900).describe('Length of the login rate-limit window.'),
    })
    .default({ sessionDays: 30, loginAttempts: 10, loginWindowSeconds: 900 }),
  processing: z
    .object({
      inProcess: flag
        .default(true)
        .describe('Run the workers inside `server start`; false when `photovault worker start` processes run them.'),
      thumbnails: positiveInt.default(2).describe('Thumbnail jobs at once per process, one libvips thread each.'),
      metadata: positiveInt.default(2).describe('Metadata jobs at once per process (mostly waiting on reads).'),
      transcode: positiveInt.default(1).describe('Video transcodes at once per process (ffmpeg uses every core).'),
      maxAttempts: positiveInt.default(4).describe('Tries of a job that keeps failing before it ends as failed.'),
      leaseSeconds: positiveInt
        .default(30)
        .describe("How long a killed worker's job waits before another worker takes it (a live worker renews its lease)."),
      port: port
        .default(8421)
        .describe("TCP port of `photovault worker start`'s /healthz and /metrics (on server.host); 0 picks a free one."),
    })
    .default({ inProcess: true, thumbnails: 2, metadata: 2, transcode: 1, maxAttempts: 4, leaseSeconds: 30, port: 8421 }),
  tiering: z
    .object({
      warmAfterDays: positiveInt.default(30).describe('Days after which an object moves from `uploads` to `photos-warm`.'),
      coldAfterDays: positiveInt.default(180).describe('Days after which an object moves to `photos-cold`.'),
      intervalHours: z.coerce
        .number()
        .min(0)
        .max(168)
        .default(24)
        .describe(
          'Hours between the tiering runs of `server start` (the first a minute after start); 0: only `photovault admin tier` runs it.',
        ),
    })
    .refine((tiering) => tiering.coldAfterDays > tiering.warmAfterDays, {
      message: 'must be greater than tiering.warmAfterDays',
      path: ['coldAfterDays'],
    })
    .default({ warmAfterDays: 30, coldAfterDays: 180, intervalHours: 24 }),
  storage: z
    .object({
      // Strict, so a misspelt bucket name fails the start instead of being ignored.
      buckets: z
        .strictObject(Object.fromEntries(BUCKETS.map((bucket) => [bucket, bucketSettings.optional()])) as BucketSettingsShape)
        .default({}),
    })
    .default({ buckets: {} }),
  log: z
    .object({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('Log level.'),
    })
    .default({ level: 'info' }),
});

export type ServerConfig = Readonly<z.infer<typeof serverConfigSchema>>;

export type Env = Record<string, string | undefined>;

export interface ServerConfigSources {
  /** Values from command-line flags, already shaped like the schema (e.g. { server: { port } }). */
  flags?: Record<string, unknown>;
  /** Explicit config file; otherwise PHOTOVAULT_CONFIG, otherwise <dataDir>/config.json when present. */
  configFile?: string;
  env?: Env;
}

/** The default data dir: /var/lib/photovault for a system (root) server, XDG data home otherwise. */
export function defaultDataDir(env: Env = process.env): string {
  if (process.getuid?.() === 0) return '/var/lib/photovault';
  return join(env.XDG_DATA_HOME || join(homedir(), '.local', 'share'), 'photovault');
}

/** Loads, merges and validates the server configuration; throws PV_CONFIG_INVALID naming the key and the fix. */
export function loadServerConfig(sources: ServerConfigSources = {}): ServerConfig {
  const env = sources.env ?? process.env;
  const fromEnv = readEnv(env);
  const flags = sources.flags ?? {};
  const dataDir = resolve(String(flags.dataDir ?? fromEnv.dataDir ?? defaultDataDir(env)));
  const configFile = sources.configFile ?? env.PHOTOVAULT_CONFIG ?? join(dataDir, 'config.json');
  const explicitFile = sources.configFile !== undefined || env.PHOTOVAULT_CONFIG !== undefined;
  const fromFile = readConfigFile(configFile, explicitFile);

  const merged = deepMerge(deepMerge(deepMerge({}, fromFile), fromEnv), flags);
  merged.dataDir = resolve(String(merged.dataDir ?? dataDir));
  const parsed = serverConfigSchema.safeParse(merged);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const key = issue.path.join('.');
      return `${key} (${envName(issue.path.map(String))}): ${issue.message}`;
    });
    throw new PvError('PV_CONFIG_INVALID', `Invalid configuration:\n  ${problems.join('\n  ')}`, {
      problems,
      fix: `Correct the key in ${configFile}, the environment variable, or the flag; see docs/configuration.md.`,
    });
  }
  return deepFreeze(parsed.data);
}

/** The environment variable that sets a config key, e.g. ['server','port'] -> PHOTOVAULT_SERVER_PORT. */
export function envName(path: string[]): string {
  return `PHOTOVAULT_${path
    .map((part) =>
      part
        .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
        .replaceAll('-', '_')
        .toUpperCase(),
    )
    .join('_')}`;
}

/** Every environment variable the server configuration reads: one per key, and PHOTOVAULT_CONFIG naming the file. */
export function serverConfigEnvNames(): string[] {
  return ['PHOTOVAULT_CONFIG', ...leafPaths(serverConfigSchema).map(envName)];
}

function readConfigFile(file: string, required: boolean): Record<string, unknown> {
  if (!existsSync(file)) {
    if (!required) return {};
    throw new PvError('PV_CONFIG_INVALID', `Config file ${file} does not exist.`, {
      fix: 'Create it, or unset PHOTOVAULT_CONFIG / drop --config to run on defaults.',
    });
  }
  try {
    const value: unknown = JSON.parse(readFileSync(file, 'utf8'));
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('the top level must be an object');
    return value as Record<string, unknown>;
  } catch (error) {
    throw new PvError('PV_CONFIG_INVALID', `Config file ${file} is not valid JSON: ${(error as Error).message}.`, {
      fix: 'Fix the JSON syntax (a checker such as `node -e "JSON.parse(require(\'fs\').readFileSync(0))" < FILE` shows where).',
    });
  }
}

/** Reads every PHOTOVAULT_* variable that names a schema leaf into the schema's shape. */
function readEnv(env: Env): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const path of leafPaths(serverConfigSchema)) {
    const value = env[envName(path)];
    if (value === undefined || value === '') continue;
    let node = out;
    for (const part of path.slice(0, -1)) node = (node[part] ??= {}) as Record<string, unknown>;
    node[path.at(-1)!] = value;
  }
  return out;
}

function leafPaths(schema: z.ZodType, prefix: string[] = []): string[][] {
  let inner: z.ZodType = schema;
  while (inner instanceof z.ZodDefault || inner instanceof z.ZodOptional) inner = inner.unwrap() as z.ZodType;
  if (!(inner instanceof z.ZodObject)) return [prefix];
  return Object.entries(inner.shape as Record<string, z.ZodType>).flatMap(([key, child]) => leafPaths(child, [...prefix, key]));
}

function deepMerge(target: Record<string, unknown>, source: Record<string, unknown>): Record<string, unknown> {
  for (const [key, value] of Object.entries(source)) {
    if (value === undefined) continue;
    const existing = target[key];
    if (isPlainObject(value) && isPlainObject(existing)) deepMerge(existing, value);
    else target[key] = isPlainObject(value) ? deepMerge({}, value) : value;
  }
  return target;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function deepFreeze<T>(value: T): T {
  if (isPlainObject(value)) for (const child of Object.values(value)) deepFreeze(child);
  return Object.freeze(value);
}
