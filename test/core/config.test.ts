import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { clientConfigDir } from '../../src/core/client-config.js';
import { envName, loadServerConfig, serverConfigEnvNames } from '../../src/core/config.js';
import { bucketRoots } from '../../src/server/context.js';

describe('server config', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pv-config-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('needs nothing: the embedded default is complete', () => {
    const config = loadServerConfig({ env: {}, flags: { dataDir: dir } });
    expect(config.dataDir).toBe(dir);
    expect(config.server.port).toBe(8420);
    expect(config.database.url).toBeUndefined();
    expect(Object.isFrozen(config.server)).toBe(true);
  });

  it('layers file < environment < flags', async () => {
    await writeFile(join(dir, 'config.json'), JSON.stringify({ server: { port: 1111, host: '127.0.0.1' }, auth: { sessionDays: 7 } }));
    const fromFile = loadServerConfig({ env: {}, flags: { dataDir: dir } });
    expect(fromFile.server).toEqual({
      port: 1111,
      host: '127.0.0.1',
      trustProxy: '',
      services: ['users', 'upload', 'files', 'sync', 'media'],
    });
    const fromEnv = loadServerConfig({ env: { PHOTOVAULT_SERVER_PORT: '2222', PHOTOVAULT_DATA_DIR: dir }, flags: {} });
    expect(fromEnv.server.port).toBe(2222);
    expect(fromEnv.auth.sessionDays).toBe(7);
    const fromFlags = loadServerConfig({ env: { PHOTOVAULT_SERVER_PORT: '2222' }, flags: { dataDir: dir, server: { port: '3333' } } });
    expect(fromFlags.server.port).toBe(3333);
  });

  it.each([
    [{ PHOTOVAULT_SERVER_PORT: 'eighty' }, 'server.port (PHOTOVAULT_SERVER_PORT)'],
    [{ PHOTOVAULT_SERVER_PORT: '70000' }, 'server.port (PHOTOVAULT_SERVER_PORT)'],
    [{ PHOTOVAULT_DATABASE_URL: 'mysql://x' }, 'database.url (PHOTOVAULT_DATABASE_URL)'],
    [{ PHOTOVAULT_LOG_LEVEL: 'loud' }, 'log.level (PHOTOVAULT_LOG_LEVEL)'],
    [{ PHOTOVAULT_REDIS_URL: 'localhost:6379' }, 'redis.url (PHOTOVAULT_REDIS_URL)'],
    [{ PHOTOVAULT_NATS_URL: 'http://127.0.0.1:4222' }, 'nats.url (PHOTOVAULT_NATS_URL)'],
    [{ PHOTOVAULT_S3_ENDPOINT: 'minio.lan:9000' }, 's3.endpoint (PHOTOVAULT_S3_ENDPOINT)'],
    [{ PHOTOVAULT_S3_ENDPOINT: 'http://minio.lan:9000', PHOTOVAULT_S3_ACCESS_KEY: 'key' }, 's3.secretKey (PHOTOVAULT_S3_SECRET_KEY)'],
    [{ PHOTOVAULT_SERVER_SERVICES: 'files,photos' }, 'server.services (PHOTOVAULT_SERVER_SERVICES)'],
    [{ PHOTOVAULT_SERVER_SERVICES: ' , ' }, 'server.services (PHOTOVAULT_SERVER_SERVICES)'],
  ])('names the key and the variable of a bad value: %j', (env, named) => {
    expect(() => loadServerConfig({ env, flags: { dataDir: dir } })).toThrowError(
      expect.objectContaining({ code: 'PV_CONFIG_INVALID', message: expect.stringContaining(named) }),
    );
  });

  it('chooses every cluster backend from the environment alone', () => {
    const config = loadServerConfig({
      env: {
        PHOTOVAULT_DATABASE_URL: 'postgres://pv@db.lan/photovault',
        PHOTOVAULT_REDIS_URL: 'redis://cache.lan:6379',
        PHOTOVAULT_NATS_URL: 'nats://bus.lan:4222',
        PHOTOVAULT_S3_ENDPOINT: 'http://minio.lan:9000',
        PHOTOVAULT_S3_ACCESS_KEY: 'access',
        PHOTOVAULT_S3_SECRET_KEY: 'secret',
      },
      flags: { dataDir: dir },
    });
    expect(config.database.url).toBe('postgres://pv@db.lan/photovault');
    expect(config.redis).toEqual({ url: 'redis://cache.lan:6379', keyPrefix: 'photovault:' });
    expect(config.nats).toEqual({ url: 'nats://bus.lan:4222', prefix: 'photovault' });
    expect(config.s3).toEqual({
      endpoint: 'http://minio.lan:9000',
      accessKey: 'access',
      secretKey: 'secret',
      region: 'us-east-1',
      bucketPrefix: 'photovault-',
    });
  });

  it('reports a broken config file with its path and a fix', async () => {
    const file = join(dir, 'broken.json');
    await writeFile(file, '{ "server": ');
    expect(() => loadServerConfig({ env: {}, configFile: file, flags: { dataDir: dir } })).toThrowError(
      expect.objectContaining({
        code: 'PV_CONFIG_INVALID',
        message: expect.stringContaining(file),
        details: expect.objectContaining({ fix: expect.any(String) }),
      }),
    );
  });

  it('fails when an explicitly named config file is missing', () => {
    expect(() => loadServerConfig({ env: { PHOTOVAULT_CONFIG: join(dir, 'nope.json') }, flags: { dataDir: dir } })).toThrowError(
      expect.objectContaining({ code: 'PV_CONFIG_INVALID' }),
    );
  });

  it('serves every API service unless told which, from a comma-separated list or a JSON array', () => {
    expect(loadServerConfig({ env: {}, flags: { dataDir: dir } }).server.services).toEqual(['users', 'upload', 'files', 'sync', 'media']);
    const fromEnv = loadServerConfig({ env: { PHOTOVAULT_SERVER_SERVICES: 'sync, files,sync' }, flags: { dataDir: dir } });
    expect(fromEnv.server.services).toEqual(['sync', 'files']);
    const fromFlags = loadServerConfig({ env: {}, flags: { dataDir: dir, server: { services: ['media'] } } });
    expect(fromFlags.server.services).toEqual(['media']);
  });

  it('lists every environment variable it reads, bucket overrides included', () => {
    const names = serverConfigEnvNames();
    expect(names).toEqual(
      expect.arrayContaining([
        'PHOTOVAULT_CONFIG',
        'PHOTOVAULT_DATA_DIR',
        'PHOTOVAULT_SERVER_SERVICES',
        'PHOTOVAULT_PROCESSING_IN_PROCESS',
        'PHOTOVAULT_STORAGE_BUCKETS_PHOTOS_COLD_ENDPOINT',
        'PHOTOVAULT_STORAGE_BUCKETS_VIDEOS_TRANSCODED_NAME',
      ]),
    );
    expect(names).not.toContain('PHOTOVAULT_STORAGE_BUCKETS');
  });

  it('derives environment names from key paths', () => {
    expect(envName(['dataDir'])).toBe('PHOTOVAULT_DATA_DIR');
    expect(envName(['uploads', 'maxFileBytes'])).toBe('PHOTOVAULT_UPLOADS_MAX_FILE_BYTES');
    expect(envName(['storage', 'buckets', 'photos-cold', 'path'])).toBe('PHOTOVAULT_STORAGE_BUCKETS_PHOTOS_COLD_PATH');
  });

  it('places each bucket in its own folder, by default under the data dir, relative paths from the data dir', async () => {
    await writeFile(join(dir, 'config.json'), JSON.stringify({ storage: { buckets: { 'photos-warm': { path: 'warm-disk' } } } }));
    const config = loadServerConfig({
      env: { PHOTOVAULT_STORAGE_BUCKETS_PHOTOS_COLD_PATH: '/mnt/cold/photovault' },
      flags: { dataDir: dir },
    });
    expect(bucketRoots(config)).toEqual({
      uploads: join(dir, 'blobs', 'uploads'),
      'photos-warm': join(dir, 'warm-disk'),
      'photos-cold': '/mnt/cold/photovault',
      thumbnails: join(dir, 'blobs', 'thumbnails'),
      'videos-transcoded': join(dir, 'blobs', 'videos-transcoded'),
    });
  });

  it.each([
    [{ storage: { buckets: { 'photos-frozen': { path: '/x' } } } }, 'storage.buckets'],
    [{ tiering: { warmAfterDays: 60, coldAfterDays: 30 } }, 'tiering.coldAfterDays'],
    [{ tiering: { intervalHours: -1 } }, 'tiering.intervalHours'],
  ])('rejects a misspelt bucket and inconsistent tiering: %j', (flags, named) => {
    expect(() => loadServerConfig({ env: {}, flags: { dataDir: dir, ...flags } })).toThrowError(
      expect.objectContaining({ code: 'PV_CONFIG_INVALID', message: expect.stringContaining(named) }),
    );
  });

  it('tiers after 30 and 180 days and runs every 24 hours unless configured otherwise', () => {
    expect(loadServerConfig({ env: {}, flags: { dataDir: dir } }).tiering).toEqual({
      warmAfterDays: 30,
      coldAfterDays: 180,
      intervalHours: 24,
    });
    const config = loadServerConfig({
      env: { PHOTOVAULT_TIERING_INTERVAL_HOURS: '0', PHOTOVAULT_TIERING_WARM_AFTER_DAYS: '7' },
      flags: { dataDir: dir },
    });
    expect(config.tiering).toEqual({ warmAfterDays: 7, coldAfterDays: 180, intervalHours: 0 });
  });

  it('puts client credentials under PHOTOVAULT_CONFIG_DIR or the XDG config home', () => {
    expect(clientConfigDir({ PHOTOVAULT_CONFIG_DIR: '/x/pv' })).toBe('/x/pv');
    expect(clientConfigDir({ XDG_CONFIG_HOME: '/home/a/.cfg' })).toBe('/home/a/.cfg/photovault');
  });
});
