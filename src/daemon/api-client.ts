import type { Readable } from 'node:stream';
import { Agent, type Dispatcher, request } from 'undici';
import { isPvError, PvError, type PvErrorCode } from '../core/errors.js';
import { API_PREFIX } from '../core/api-prefix.js';
import { FILE_RECORDS_TYPE, type FileRecord, readFileRecords } from '../core/file-records.js';
import { piecesOf } from '../core/stream-pieces.js';
import type {
  ApiKeyView,
  ChangePage,
  ChunkReceipt,
  ContentRecordHeader,
  DeviceView,
  FileEntry,
  FileList,
  FileVersionView,
  LoginRequest,
  LoginResponse,
  ManifestsResult,
  MediaView,
  TrashEntry,
  UploadBatchResult,
  UploadRequest,
  UploadStatus,
  VersionManifest,
  VersionPatch,
} from '../core/protocol.js';
import { WHOLE_FILE_MAX_BYTES } from '../core/protocol-limits.js';

type Query = Record<string, string | number | undefined>;

interface CallOptions {
  method: Dispatcher.HttpMethod;
  path: string;
  query?: Query;
  json?: unknown;
  body?: Buffer;
  headers?: Record<string, string>;
  /** Statuses that are answers rather than errors. */
  expect?: number[];
}

/** A client of the photovault HTTP API: one keep-alive connection pool, errors as PvError. */
export class ApiClient {
  private readonly agent: Agent;

  constructor(
    readonly server: string,
    private readonly token: string | null,
    options: { connections?: number } = {},
  ) {
    this.agent = new Agent({ connections: options.connections ?? 8, keepAliveTimeout: 30_000 });
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  login(body: LoginRequest): Promise<LoginResponse> {
    return this.json({ method: 'POST', path: '/auth/login', json: body });
  }

  me(): Promise<{ id: string; name: string; isAdmin: boolean; deviceId: string | null }> {
    return this.json({ method: 'GET', path: '/auth/me' });
  }

  async logout(): Promise<void> {
    await this.json({ method: 'POST', path: '/auth/logout', expect: [204] });
  }

  beginUpload(body: UploadRequest): Promise<UploadStatus> {
    return this.json({ method: 'POST', path: '/uploads', json: body });
  }

  /**
   * Several negotiations in one request (POST /uploads/batch): per request, its status or the
   * PvError POST /uploads would have answered with.
   */
  async beginUploads(requests: UploadRequest[], options: { sendWhole?: boolean } = {}): Promise<(UploadStatus | PvError)[]> {
    const { results } = await this.json<UploadBatchResult>({
      method: 'POST',
      path: '/uploads/batch',
      json: { uploads: requests, ...options },
    });
    return results.map(statusOrError);
  }

  /**
   * Sends new files whole, many in one request (POST /uploads/files): body holds each file's
   * negotiation and bytes, framed as src/core/file-records.ts says. Per file, its committed
   * status or the PvError it failed with alone.
   */
  async putWholeFiles(body: Buffer): Promise<(UploadStatus | PvError)[]> {
    const { results } = await this.json<UploadBatchResult>({
      method: 'POST',
      path: '/uploads/files',
      body,
      headers: { 'content-type': FILE_RECORDS_TYPE },
    });
    return results.map(statusOrError);
  }

  uploadStatus(uploadId: string): Promise<UploadStatus> {
    return this.json({ method: 'GET', path: `/uploads/${encodeURIComponent(uploadId)}` });
  }

  putChunk(uploadId: string, hash: string, bytes: Buffer): Promise<ChunkReceipt> {
    return this.json({
      method: 'PUT',
      path: `/uploads/${encodeURIComponent(uploadId)}/chunks/${hash}`,
      body: bytes,
      headers: { 'content-type': 'application/octet-stream' },
    });
  }

  /** Sends chunks as one delta that rebuilds them back to back from base chunks the upload status offered. */
  async putChunksDelta(uploadId: string, hashes: string[], base: string[], delta: Buffer): Promise<ChunkReceipt[]> {
    const answer = await this.json<{ chunks: ChunkReceipt[] }>({
      method: 'PUT',
      path: `/uploads/${encodeURIComponent(uploadId)}/chunks`,
      query: { hashes: hashes.join(','), base: base.join(',') },
      body: delta,
      headers: { 'content-type': 'application/vnd.photovault.delta' },
    });
    return answer.chunks;
  }

  /** Sends several chunks in one request: their bytes back to back, in the order of hashes. */
  async putChunks(uploadId: string, hashes: string[], bytes: Buffer): Promise<ChunkReceipt[]> {
    const answer = await this.json<{ chunks: ChunkReceipt[] }>({
      method: 'PUT',
      path: `/uploads/${encodeURIComponent(uploadId)}/chunks`,
      query: { hashes: hashes.join(',') },
      body: bytes,
      headers: { 'content-type': 'application/octet-stream' },
    });
    return answer.chunks;
  }

  /** Commits an upload; the last chunks (as putChunks sends them) can travel with the commit. */
  commitUpload(uploadId: string, last?: { hashes: string[]; bytes: Buffer }): Promise<UploadStatus> {
    const path = `/uploads/${encodeURIComponent(uploadId)}/commit`;
    if (!last) return this.json({ method: 'POST', path });
    return this.json({
      method: 'POST',
      path,
      query: { hashes: last.hashes.join(',') },
      body: last.bytes,
      headers: { 'content-type': 'application/octet-stream' },
    });
  }

  list(dir: string, cursor?: string, limit?: number): Promise<FileList> {
    return this.json({ method: 'GET', path: '/files', query: { dir, cursor, limit } });
  }

  stat(path: string): Promise<FileEntry> {
    return this.json({ method: 'GET', path: '/files/stat', query: { path } });
  }

  versions(path: string): Promise<FileVersionView[]> {
    return this.json({ method: 'GET', path: '/files/versions', query: { path } });
  }

  remove(path: string): Promise<TrashEntry> {
    return this.json({ method: 'DELETE', path: '/files', query: { path } });
  }

  move(from: string, to: string): Promise<FileEntry> {
    return this.json({ method: 'POST', path: '/files/move', json: { from, to } });
  }

  /** A page of the change feed; excludeProcessed leaves out processing results (a server from before ignores it). */
  changes(since: number, limit: number, options: { excludeProcessed?: boolean } = {}): Promise<ChangePage> {
    return this.json({
      method: 'GET',
      path: '/changes',
      query: { since, limit, exclude: options.excludeProcessed ? 'processed' : undefined },
    });
  }

  async acknowledge(seq: number): Promise<void> {
    await this.json({ method: 'POST', path: '/changes/ack', json: { seq } });
  }

  trash(): Promise<TrashEntry[]> {
    return this.json({ method: 'GET', path: '/trash' });
  }

  restore(trashId: string): Promise<TrashEntry> {
    return this.json({ method: 'POST', path: `/trash/${encodeURIComponent(trashId)}/restore` });
  }

  emptyTrash(): Promise<{ entries: number }> {
    return this.json({ method: 'DELETE', path: '/trash' });
  }

  devices(): Promise<DeviceView[]> {
    return this.json({ method: 'GET', path: '/devices' });
  }

  async revokeDevice(deviceId: string): Promise<void> {
    await this.json({ method: 'DELETE', path: `/devices/${encodeURIComponent(deviceId)}`, expect: [204] });
  }

  apiKeys(): Promise<ApiKeyView[]> {
    return this.json({ method: 'GET', path: '/api-keys' });
  }

  createApiKey(label?: string): Promise<{ token: string; apiKey: ApiKeyView }> {
    return this.json({ method: 'POST', path: '/api-keys', json: { label } });
  }

  async revokeApiKey(id: string): Promise<void> {
    await this.json({ method: 'DELETE', path: `/api-keys/${encodeURIComponent(id)}`, expect: [204] });
  }

  manifest(path: string, version?: string): Promise<VersionManifest> {
    return this.json({ method: 'GET', path: '/files/manifest', query: { path, version } });
  }

  /** The manifests of several files' heads in one request: per path, its manifest or the PvError GET /files/manifest would give. */
  async manifests(paths: string[]): Promise<Map<string, VersionManifest | PvError>> {
    const { manifests } = await this.json<ManifestsResult>({ method: 'POST', path: '/files/manifests', json: { paths } });
    return new Map<string, VersionManifest | PvError>(
      manifests.map((entry): [string, VersionManifest | PvError] =>
        'code' in entry
          ? [entry.path, new PvError(entry.code as PvErrorCode, entry.detail)]
          : [entry.path, { version: entry.version, manifest: entry.manifest }],
      ),
    );
  }

  /**
   * The bytes of several versions in one request (POST /files/contents, at most 64): their
   * records as they arrive, in the order asked, each its bytes or, with size 0, the code saying
   * why not. The request goes out on the first iteration; a server without the route fails it
   * with PV_NOT_FOUND. A body broken off midway fails the iteration (PV_SERVER_UNREACHABLE) after
   * the records that came whole.
   */
  async *contents(versionIds: string[]): AsyncGenerator<FileRecord<ContentRecordHeader>> {
    const response = await this.send({ method: 'POST', path: '/files/contents', json: { versions: versionIds } });
    try {
      yield* readFileRecords<ContentRecordHeader>(piecesOf(response.body), {
        records: versionIds.length,
        recordBytes: WHOLE_FILE_MAX_BYTES,
      });
    } catch (error) {
      if (isPvError(error)) throw error;
      throw new PvError('PV_SERVER_UNREACHABLE', `The server at ${this.server} broke off its answer: ${(error as Error).message}.`, {
        fix: 'Sync again; files the answer did not bring are fetched one by one.',
      });
    }
  }

  /** A file (or a version of it) as a patch of the version this client holds. */
  patch(path: string, base: string, version?: string): Promise<VersionPatch> {
    return this.json({ method: 'GET', path: '/files/patch', query: { path, base, version } });
  }

  /** What the workers derived from a photo or video: metadata, job states, thumbnails, HLS ladder. */
  media(path: string, version?: string): Promise<MediaView> {
    return this.json({ method: 'GET', path: '/files/media', query: { path, version } });
  }

  /** A derived file (a thumbnail, an HLS file) by the API path a media view gives for it. */
  async derived(apiPath: string): Promise<Readable> {
    if (!apiPath.startsWith(`${API_PREFIX}/`)) throw new PvError('PV_INVALID_INPUT', `Not an API path: ${apiPath}.`);
    const response = await this.send({ method: 'GET', path: apiPath.slice(API_PREFIX.length) });
    return response.body as Readable;
  }

  /** The bytes of a file (a version of it, a range of it), with the headers that describe them. */
  async download(path: string, options: { version?: string; range?: { start: number; end: number } } = {}) {
    const response = await this.send({
      method: 'GET',
      path: '/files/content',
      query: { path, version: options.version },
      headers: options.range ? { range: `bytes=${options.range.start}-${options.range.end}` } : {},
      expect: [200, 206],
    });
    return { status: response.statusCode, etag: String(response.headers.etag ?? ''), body: response.body as Readable };
  }

  private async json<T>(options: CallOptions): Promise<T> {
    const response = await this.send(options);
    if (response.statusCode === 204) {
      await response.body.dump();
      return undefined as T;
    }
    return (await response.body.json()) as T;
  }

  private async send(options: CallOptions): Promise<Dispatcher.ResponseData> {
    const url = new URL(`${API_PREFIX}${options.path}`, this.server);
    for (const [key, value] of Object.entries(options.query ?? {})) if (value !== undefined) url.searchParams.set(key, String(value));
    const headers: Record<string, string> = { ...options.headers };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let body: string | Buffer | undefined = options.body;
    if (options.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.json);
    }
    let response: Dispatcher.ResponseData;
    try {
      response = await request(url, { method: options.method, headers, body, dispatcher: this.agent });
    } catch (error) {
      throw new PvError('PV_SERVER_UNREACHABLE', `Cannot reach the server at ${this.server}: ${(error as Error).message}.`, {
        fix: 'Check that the server is running and the URL is right (`photovault login --server URL`).',
      });
    }
    const ok = options.expect ? options.expect.includes(response.statusCode) : response.statusCode < 300;
    if (ok) return response;
    throw await problemToError(response);
  }
}

/** A batch's answer for one file: its status, or the error it failed with alone. */
function statusOrError(result: UploadBatchResult['results'][number]): UploadStatus | PvError {
  return result.state === 'failed'
    ? new PvError(result.code as PvErrorCode, result.detail, result.fix === undefined ? {} : { fix: result.fix })
    : result;
}

/** Turns a problem+json answer into the PvError it reports. */
async function problemToError(response: Dispatcher.ResponseData): Promise<PvError> {
  const text = await response.body.text();
  try {
    const problem = JSON.parse(text) as { code?: string; detail?: string; fix?: string; missing?: string[] };
    return new PvError((problem.code ?? 'PV_INTERNAL') as PvErrorCode, problem.detail ?? `HTTP ${response.statusCode}`, {
      status: response.statusCode,
      ...(problem.fix ? { fix: problem.fix } : {}),
      ...(problem.missing ? { missing: problem.missing } : {}),
    });
  } catch {
    return new PvError('PV_INTERNAL', `The server answered HTTP ${response.statusCode}: ${text.slice(0, 200)}`, {
      status: response.statusCode,
    });
  }
}
