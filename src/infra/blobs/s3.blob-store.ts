import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { Client, InvalidArgumentError, InvalidBucketNameError, InvalidEndpointError, S3Error } from 'minio';
import { inBlocks } from '../../core/byte-blocks.js';
import { backendUnreachable, PvError } from '../../core/errors.js';
import {
  assertBlobKey,
  assertBucket,
  assertByteRange,
  blobNotFound,
  isBlobKey,
  MAX_KEY_LENGTH,
  PutCheck,
  rangePastEnd,
} from './blob-checks.js';
import { BUCKETS, type BlobInfo, type BlobStore, type Bucket, type ByteRange, type PutOptions, type PutResult } from './blob-store.js';

/** Where one photovault bucket lives: an S3 bucket on an endpoint, with the credentials for it. */
export interface S3Location {
  /** Base URL of the S3 API, e.g. `http://minio.storage:9000` or `https://s3.eu-central-1.amazonaws.com`. */
  endpoint: string;
  accessKey: string;
  secretKey: string;
  /** Name of the S3 bucket; created at open when missing. */
  bucket: string;
  /** Region to sign requests for and to create the bucket in; default: ask the server (MinIO: us-east-1). */
  region?: string;
}

export interface S3BlobStoreOptions {
  /** Each photovault bucket's S3 location; buckets may share an endpoint, never an S3 bucket. */
  buckets: Record<Bucket, S3Location>;
  /**
   * Bytes per part of a multipart put, and so about what one put holds in memory (twice: one
   * part uploading while the next fills). At least 5 MiB (S3's minimum part). Default 16 MiB.
   * Puts that declare their size use bigger parts when 10,000 of these would not hold it.
   */
  partSize?: number;
  /** How long open() waits for each endpoint to answer before it fails. Default 10 s. */
  openTimeoutMs?: number;
  /**
   * How long a request may go without a byte moving either way before it fails with
   * PV_BACKEND_UNREACHABLE: a server that stops answering fails the requests, and the uploads
   * behind them, instead of holding them for ever. Default 120 s.
   */
  requestIdleMs?: number;
}

const MIB = 1024 * 1024;
const MIN_PART_SIZE = 5 * MIB;
const MAX_PART_SIZE = 5 * 1024 * MIB;
const MAX_PARTS = 10_000;
const DEFAULT_PART_SIZE = 16 * MIB;
const DEFAULT_OPEN_TIMEOUT_MS = 10_000;
const DEFAULT_REQUEST_IDLE_MS = 120_000;
/** S3 error codes that mean the object (or, for HEAD, anything) is not there. */
const ABSENT = new Set(['NoSuchKey', 'NotFound']);

/** The configured part size, or for a declared size too big for 10,000 of those, the whole MiB that is big enough. */
export function multipartPartSize(configured: number, size?: number): number {
  if (size === undefined || size <= configured * MAX_PARTS) return configured;
  return Math.min(MAX_PART_SIZE, Math.ceil(size / MAX_PARTS / MIB) * MIB);
}

/** Every photovault bucket on one endpoint with one set of credentials, each S3 bucket named like the photovault one after namePrefix. */
export function s3BucketLocations(endpoint: Omit<S3Location, 'bucket'>, namePrefix = ''): Record<Bucket, S3Location> {
  return Object.fromEntries(BUCKETS.map((bucket) => [bucket, { ...endpoint, bucket: `${namePrefix}${bucket}` }])) as Record<
    Bucket,
    S3Location
  >;
}

/** Where one photovault bucket lives: its client, its S3 bucket's name, its configured location. */
export interface S3Target {
  client: Client;
  /** The S3 bucket's name. */
  name: string;
  location: S3Location;
}

/**
 * BlobStore over S3 (MinIO in the cluster), one S3 bucket per photovault bucket, each on its own
 * endpoint if configured so.
 *
 * Puts use their own multipart upload, not the minio client's putObject for streams: that one
 * buffers parts of up to 5 TiB / 10,000 for a body of unknown length, and resumes any unfinished
 * upload of the same key, which would splice together the parts of two processes putting the same
 * content at once.
 */
export class S3BlobStore implements BlobStore {
  private readonly targets: Record<Bucket, S3Target>;
  private readonly agents: http.Agent[] = [];
  private readonly partSize: number;
  private readonly requestIdleMs: number;

  constructor(options: S3BlobStoreOptions) {
    const partSize = options.partSize ?? DEFAULT_PART_SIZE;
    if (!Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE || partSize > MAX_PART_SIZE) {
      throw new PvError('PV_CONFIG_INVALID', `S3 part size ${partSize} is not between 5 MiB and 5 GiB`, { partSize });
    }
    this.partSize = partSize;
    this.requestIdleMs = options.requestIdleMs ?? DEFAULT_REQUEST_IDLE_MS;
    const clients = new Map<string, Client>();
    const targets = {} as Record<Bucket, S3Target>;
    const owners = new Map<string, Bucket>();
    for (const bucket of BUCKETS) {
      const location = options.buckets[bucket];
      if (!location) throw new PvError('PV_CONFIG_INVALID', `No S3 location for blob bucket ${bucket}`, { bucket });
      const url = endpointUrl(location.endpoint, bucket);
      // Two photovault buckets in one S3 bucket would see each other's objects in list.
      const place = `${url.origin} ${location.bucket}`;
      const other = owners.get(place);
      if (other !== undefined) {
        throw new PvError(
          'PV_CONFIG_INVALID',
          `Blob buckets ${other} and ${bucket} are both S3 bucket ${location.bucket} on ${location.endpoint}`,
          {
            fix: 'Give each blob bucket its own S3 bucket',
          },
        );
      }
      owners.set(place, bucket);
      const identity = JSON.stringify([url.origin, location.accessKey, location.secretKey, location.region ?? '']);
      let client = clients.get(identity);
      if (!client) {
        client = this.newClient(url, location, bucket);
        clients.set(identity, client);
      }
      targets[bucket] = { client, name: location.bucket, location };
    }
    this.targets = targets;
  }

  /**
   * Connects to every endpoint and creates the buckets that are missing. Fails with
   * PV_BACKEND_UNREACHABLE, or PV_CONFIG_INVALID when the server refuses, naming the endpoint and bucket.
   */
  static async open(options: S3BlobStoreOptions): Promise<S3BlobStore> {
    const store = new S3BlobStore(options);
    // Settled, not raced: no request is left running against a store that failed to open.
    const outcomes = await Promise.allSettled(
      BUCKETS.map((bucket) => store.ensureBucket(bucket, options.openTimeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS)),
    );
    const failure = outcomes.find((outcome) => outcome.status === 'rejected');
    if (failure) {
      await store.close();
      throw failure.reason;
    }
    return store;
  }

  /**
   * The bytes go up as a multipart upload, one part at a time while the next part fills; a body
   * smaller than one part goes up as one PUT once it has ended. Either way the sha256 and size
   * are checked before the last request, the one that makes the object: S3 shows no object for an
   * upload that is never completed, so a mismatch or a failing body leaves nothing visible and any
   * previous object intact, without a temporary key and a server-side copy that would write every
   * object twice. An upload a crash leaves unfinished stays invisible; a lifecycle rule
   * (AbortIncompleteMultipartUpload) on the bucket reclaims its parts. `durable` changes nothing:
   * S3 keeps whatever it acknowledged.
   */
  async put(bucket: Bucket, key: string, body: Readable | AsyncIterable<Uint8Array>, options: PutOptions = {}): Promise<PutResult> {
    const target = this.targetOf(bucket, key);
    const { client, name } = target;
    const check = new PutCheck(bucket, key, options);
    const partSize = multipartPartSize(this.partSize, options.size);
    let upload: { id: string; parts: { part: number; etag: string }[] } | undefined;
    let partsSent = 0;
    let inFlight: Promise<void> = Promise.resolve();
    const sendPart = async (bytes: Buffer): Promise<void> => {
      await inFlight;
      upload ??= { id: await reaching(target, () => client.initiateNewMultipartUpload(name, key, {})), parts: [] };
      const { id, parts } = upload;
      const part = ++partsSent;
      if (part > MAX_PARTS) {
        throw new PvError('PV_INVALID_INPUT', `Blob ${key} is larger than ${MAX_PARTS} parts of ${partSize} bytes`, {
          bucket,
          key,
          fix: 'Pass the size with the put, so that it can choose parts big enough',
        });
      }
      inFlight = reaching(target, () =>
        client.uploadPart({ bucketName: name, objectName: key, uploadID: id, partNumber: part, headers: {} }, bytes),
      ).then(({ etag }) => {
        parts.push({ part, etag });
      });
      // Awaited before the next part or at the end; until then its failure is only recorded.
      inFlight.catch(() => {});
    };
    try {
      // The first block waits for a second before it goes as a part: alone, it is the whole object.
      let first: Buffer | undefined;
      for await (const block of inBlocks(body, partSize)) {
        check.update(block);
        if (!upload && !first) {
          first = block;
          continue;
        }
        if (first) await sendPart(first);
        first = undefined;
        await sendPart(block);
      }
      const result = check.finish();
      if (!upload) {
        await reaching(target, () => client.putObject(name, key, first ?? Buffer.alloc(0)));
        return result;
      }
      await inFlight;
      await reaching(target, () => client.completeMultipartUpload(name, key, upload!.id, upload!.parts));
      return result;
    } catch (error) {
      await inFlight.catch(() => {});
      // Best effort: the unfinished upload is invisible either way, and the caller needs the put's own error.
      if (upload) await client.abortMultipartUpload(name, key, upload.id).catch(() => {});
      throw error;
    }
  }

  async get(bucket: Bucket, key: string, range?: ByteRange): Promise<Readable> {
    const target = this.targetOf(bucket, key);
    const { client, name } = target;
    if (range !== undefined) assertByteRange(range);
    try {
      if (range === undefined) return await reaching(target, () => client.getObject(name, key));
      return exactRange(await reaching(target, () => client.getPartialObject(name, key, range.start, range.end - range.start + 1)), range);
    } catch (error) {
      if (isAbsent(error)) throw blobNotFound(bucket, key);
      if (range !== undefined && s3Code(error) === 'InvalidRange') throw rangePastEnd(bucket, key, range);
      throw error;
    }
  }

  async head(bucket: Bucket, key: string): Promise<BlobInfo | null> {
    const target = this.targetOf(bucket, key);
    const { client, name } = target;
    try {
      const stat = await reaching(target, () => client.statObject(name, key));
      return { key, size: stat.size };
    } catch (error) {
      if (isAbsent(error)) return null;
      throw error;
    }
  }

  async delete(bucket: Bucket, key: string): Promise<void> {
    const target = this.targetOf(bucket, key);
    // S3 answers a delete of an absent key with success.
    await reaching(target, () => target.client.removeObject(target.name, key));
  }

  async *list(bucket: Bucket, prefix = ''): AsyncIterable<BlobInfo> {
    assertBucket(bucket);
    const target = this.targets[bucket];
    if (prefix.length > MAX_KEY_LENGTH) return;
    for await (const item of listing(target, prefix, true)) {
      // Keys a BlobStore cannot hold (the staging area's, or another tool's) are not its objects.
      if (item.name !== undefined && isBlobKey(item.name)) yield { key: item.name, size: item.size };
    }
  }

  async close(): Promise<void> {
    for (const agent of this.agents.splice(0)) agent.destroy();
  }

  /** The client and S3 bucket name of a photovault bucket: where S3StagingArea keeps its objects. */
  bucketOf(bucket: Bucket): S3Target {
    assertBucket(bucket);
    return this.targets[bucket];
  }

  /** Validates bucket and key before any request goes out. */
  private targetOf(bucket: Bucket, key: string): S3Target {
    assertBucket(bucket);
    assertBlobKey(key);
    return this.targets[bucket];
  }

  private newClient(url: URL, location: S3Location, bucket: Bucket): Client {
    const useSSL = url.protocol === 'https:';
    // An agent of our own, so that close() ends its kept-alive sockets.
    const agent = idleLimitedAgent(useSSL, this.requestIdleMs);
    this.agents.push(agent);
    const options = {
      endPoint: url.hostname,
      ...(url.port === '' ? {} : { port: Number(url.port) }),
      useSSL,
      accessKey: location.accessKey,
      secretKey: location.secretKey,
      ...(location.region === undefined ? {} : { region: location.region }),
      transportAgent: agent,
      // putObject only ever gets a Buffer smaller than our part size; at S3's largest part size
      // it never starts a multipart upload of its own (see the class comment).
      partSize: MAX_PART_SIZE,
    };
    try {
      return new Client(options);
    } catch (error) {
      if (!(error instanceof InvalidEndpointError || error instanceof InvalidArgumentError)) throw error;
      throw new PvError('PV_CONFIG_INVALID', `S3 endpoint ${location.endpoint} of blob bucket ${bucket} is invalid: ${error.message}`, {
        endpoint: location.endpoint,
      });
    }
  }

  private async ensureBucket(bucket: Bucket, timeoutMs: number): Promise<void> {
    const { client, name, location } = this.targets[bucket];
    const where = `S3 endpoint ${location.endpoint}, bucket ${name} (blob bucket ${bucket})`;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([this.createIfMissing(client, name, location.region), timeout]);
    } catch (error) {
      // Connection errors of several addresses (localhost: ::1 and 127.0.0.1) come as an AggregateError without a message.
      const reason = (error as Error).message || (error as NodeJS.ErrnoException).code || String(error);
      // The server answered, or the client refused the bucket name or region: the configuration is wrong.
      if (error instanceof S3Error || error instanceof InvalidBucketNameError || error instanceof InvalidArgumentError) {
        throw new PvError('PV_CONFIG_INVALID', `${where} cannot be used: ${reason}`, {
          endpoint: location.endpoint,
          bucket: name,
          fix: `Check the access key, secret key and bucket name configured for blob bucket ${bucket}`,
        });
      }
      throw new PvError('PV_BACKEND_UNREACHABLE', `${where} is unreachable: ${reason}`, {
        endpoint: location.endpoint,
        bucket: name,
        fix: `Start the S3 server, or correct the endpoint configured for blob bucket ${bucket}`,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  private async createIfMissing(client: Client, name: string, region: string | undefined): Promise<void> {
    if (await client.bucketExists(name)) return;
    try {
      await client.makeBucket(name, region ?? '');
    } catch (error) {
      // Another process starting at the same time created it first.
      if (s3Code(error) === 'BucketAlreadyOwnedByYou' || (await client.bucketExists(name))) return;
      throw error;
    }
  }
}

/**
 * The answer to a range request, cut down to the range asked for. HTTP lets a server answer with
 * more: a 200 with the whole object, or, like s3rver for `bytes=0-0`, a wider 206.
 */
function exactRange(answer: Readable, range: ByteRange): Readable {
  const { headers } = answer as http.IncomingMessage;
  const served = /^bytes (\d+)-(\d+)\//.exec(headers['content-range'] ?? '');
  const first = served ? Number(served[1]) : 0;
  const last = served ? Number(served[2]) : Number(headers['content-length']) - 1;
  if (first === range.start && last <= range.end) return answer;
  if (first > range.start || !(last >= range.start)) {
    answer.destroy();
    throw new Error(`S3 answered range ${range.start}-${range.end} with bytes ${first}-${last}`);
  }
  return Readable.from(slice(answer, range.start - first, Math.min(last, range.end) - range.start + 1));
}

/** length bytes of the stream after the first skip. */
async function* slice(stream: Readable, skip: number, length: number): AsyncGenerator<Buffer> {
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    const piece = chunk.subarray(Math.min(skip, chunk.length), Math.min(skip + length, chunk.length));
    skip = Math.max(0, skip - chunk.length);
    length -= piece.length;
    if (piece.length > 0) yield piece;
    if (length === 0) return;
  }
}

/**
 * An agent whose sockets end a request that went requestIdleMs without a byte moving: Node only
 * tells of such a socket (and closes it only while it idles in the pool), so it is destroyed
 * here, failing the request that holds it.
 */
function idleLimitedAgent(useSSL: boolean, idleMs: number): http.Agent {
  const agent = useSSL ? new https.Agent({ keepAlive: true, timeout: idleMs }) : new http.Agent({ keepAlive: true, timeout: idleMs });
  const connect = agent.createConnection.bind(agent) as (...args: unknown[]) => Socket;
  agent.createConnection = ((...args: unknown[]) => {
    const socket = connect(...args);
    socket.on('timeout', () => socket.destroy(Object.assign(new Error(`no answer for ${idleMs} ms`), { code: 'ETIMEDOUT' })));
    return socket;
  }) as typeof agent.createConnection;
  return agent;
}

/**
 * Runs a request of the S3 client, reporting a failure to reach the server (refused, reset, idle
 * past requestIdleMs) as PV_BACKEND_UNREACHABLE naming the endpoint. What the server answered
 * (an S3Error) and what the client refused before sending pass through.
 */
export async function reaching<T>(target: S3Target, request: () => Promise<T>): Promise<T> {
  try {
    return await request();
  } catch (error) {
    if (!isNetworkError(error)) throw error;
    throw backendUnreachable('S3', target.location.endpoint, error);
  }
}

/** The objects under prefix (a folder level only, with its subfolders as prefixes, unless recursive), failing as reaching() does. */
export async function* listing(
  target: S3Target,
  prefix: string,
  recursive: boolean,
  startAfter?: string,
): AsyncGenerator<{ name?: string; prefix?: string; size: number }> {
  const items = target.client.listObjectsV2(target.name, prefix, recursive, startAfter)[Symbol.asyncIterator]();
  for (;;) {
    const next = await reaching(target, () => items.next());
    if (next.done) return;
    yield next.value as { name?: string; prefix?: string; size: number };
  }
}

/** A system error of the connection (ECONNREFUSED, ECONNRESET, ETIMEDOUT, ...), or several (one per address of a host). */
function isNetworkError(error: unknown): boolean {
  if (error instanceof AggregateError) return error.errors.some(isNetworkError);
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' && /^E[A-Z]+$/.test(code);
}

function isAbsent(error: unknown): boolean {
  const code = s3Code(error);
  return code !== undefined && ABSENT.has(code);
}

/** The S3 error code of an error the server sent, undefined for any other error. */
function s3Code(error: unknown): string | undefined {
  return error instanceof S3Error ? error.code : undefined;
}

function endpointUrl(endpoint: string, bucket: Bucket): URL {
  let url: URL | undefined;
  try {
    url = new URL(endpoint);
  } catch {
    // reported below
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname !== '/' || url.search !== '' || url.username !== '') {
    throw new PvError(
      'PV_CONFIG_INVALID',
      `S3 endpoint ${JSON.stringify(endpoint)} of blob bucket ${bucket} is no http(s) URL of a server`,
      {
        endpoint,
        fix: 'Give the endpoint as http://host:port or https://host, without a path or credentials',
      },
    );
  }
  return url;
}
