import type { FastifyInstance } from 'fastify';
import { expect } from 'vitest';
import { fingerprint, type Fingerprint } from '../../src/core/chunker.js';
import { encodeManifest } from '../../src/core/manifest.js';
import type { UploadRequest, UploadStatus } from '../../src/core/protocol.js';

type Auth = { authorization: string };

export { pseudoRandomBytes } from './random.js';

export interface PreparedUpload {
  bytes: Buffer;
  fingerprint: Fingerprint;
  request: UploadRequest;
  /** The bytes of each chunk by hash. */
  chunkBytes: Map<string, Buffer>;
}

/** Fingerprints bytes the way a client does and builds the negotiation request. */
export async function prepareUpload(path: string, bytes: Buffer, extra: Partial<UploadRequest> = {}): Promise<PreparedUpload> {
  const print = await fingerprint([bytes]);
  const chunkBytes = new Map(print.chunks.map((c) => [c.hash, bytes.subarray(c.offset, c.offset + c.length)]));
  const request: UploadRequest = {
    path,
    size: print.size,
    mtime: 1_700_000_000_000,
    contentHash: print.contentHash,
    manifest: encodeManifest(print.chunks).toString('base64'),
    ...extra,
  };
  return { bytes, fingerprint: print, request, chunkBytes };
}

export async function begin(app: FastifyInstance, auth: Auth, request: UploadRequest) {
  return app.inject({ method: 'POST', url: '/api/v1/uploads', headers: auth, payload: request });
}

export async function putChunk(app: FastifyInstance, auth: Auth, uploadId: string, hash: string, body: Buffer) {
  return app.inject({
    method: 'PUT',
    url: `/api/v1/uploads/${uploadId}/chunks/${hash}`,
    headers: { ...auth, 'content-type': 'application/octet-stream' },
    payload: body,
  });
}

export async function commit(app: FastifyInstance, auth: Auth, uploadId: string) {
  return app.inject({ method: 'POST', url: `/api/v1/uploads/${uploadId}/commit`, headers: auth });
}

/** Runs the whole protocol for bytes at path and returns the final status and the bytes sent. */
export async function uploadBytes(app: FastifyInstance, auth: Auth, path: string, bytes: Buffer, extra: Partial<UploadRequest> = {}) {
  const prepared = await prepareUpload(path, bytes, extra);
  const negotiated = await begin(app, auth, prepared.request);
  expect(negotiated.statusCode, negotiated.body).toBeLessThan(300);
  let status = negotiated.json<UploadStatus>();
  let bytesSent = 0;
  if (status.state === 'pending') {
    for (const hash of status.missing) {
      const chunk = prepared.chunkBytes.get(hash)!;
      const put = await putChunk(app, auth, status.uploadId!, hash, chunk);
      expect(put.statusCode, put.body).toBe(200);
      bytesSent += chunk.length;
    }
    const committed = await commit(app, auth, status.uploadId!);
    expect(committed.statusCode, committed.body).toBe(200);
    status = committed.json<UploadStatus>();
  }
  return { status, bytesSent, prepared };
}

/** Downloads a file's bytes through the API. */
export async function download(app: FastifyInstance, auth: Auth, path: string, headers: Record<string, string> = {}) {
  return app.inject({ method: 'GET', url: `/api/v1/files/content?path=${encodeURIComponent(path)}`, headers: { ...auth, ...headers } });
}
