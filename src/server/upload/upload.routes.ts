import type { Readable } from 'node:stream';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { CHUNK_MAX_SIZE } from '../../core/chunker.js';
import { PvError } from '../../core/errors.js';
import { FILE_RECORDS_TYPE } from '../../core/file-records.js';
import {
  CHUNKS_PER_REQUEST_MAX,
  ChunkReceiptSchema,
  UploadBatchRequestSchema,
  UploadBatchResultSchema,
  UploadRequestSchema,
  UploadStatusSchema,
} from '../../core/protocol.js';
import { principalOf } from '../http/authenticate.js';
import type { UploadService } from './upload.service.js';

const UploadParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
const ChunkParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }), hash: Type.String({ pattern: '^[0-9a-f]{64}$' }) });
const BaseField = Type.String({
  pattern: '^[0-9a-f]{64}(,[0-9a-f]{64}){0,63}$',
  description: 'with a delta body: the base chunks, comma-separated, as the upload status offered them',
});
const HashesField = Type.String({
  pattern: `^[0-9a-f]{64}(,[0-9a-f]{64}){0,${CHUNKS_PER_REQUEST_MAX - 1}}$`,
  description: `the chunks the body holds (or its delta rebuilds) back to back, in order, comma-separated (at most ${CHUNKS_PER_REQUEST_MAX})`,
});
const ChunkQuery = Type.Object({ base: Type.Optional(BaseField) });
const ChunksQuery = Type.Object({ hashes: HashesField, base: Type.Optional(BaseField) });
const CommitQuery = Type.Object({ hashes: Type.Optional(HashesField) });
/** A chunk sent as a binary delta against base chunks (docs/protocol.md). */
const DELTA_TYPE = 'application/vnd.photovault.delta';

// A manifest of MAX_MANIFEST_CHUNKS entries is ~36 MiB of base64; the JSON around it is small.
const NEGOTIATE_BODY_LIMIT = 48 * 1024 * 1024;

/** The base chunks a delta body names in ?base= (throws, draining the body, when it names none). */
function deltaBase(request: FastifyRequest<{ Querystring: { base?: string } }>, body: Readable): string[] {
  if (!request.query.base) {
    body.resume();
    throw new PvError('PV_INVALID_INPUT', 'A delta needs its base chunks.', {
      fix: 'Name them in ?base=, as the upload status offered.',
    });
  }
  return request.query.base.split(',');
}

/** The raw body of a request that carries chunks back to back. */
function chunksBody(request: FastifyRequest): Readable {
  if (Number(request.headers['content-length'] ?? 0) > CHUNKS_PER_REQUEST_MAX * CHUNK_MAX_SIZE) {
    throw new PvError(
      'PV_INVALID_INPUT',
      `A request carries at most ${CHUNKS_PER_REQUEST_MAX} chunks of at most ${CHUNK_MAX_SIZE} bytes.`,
      {
        fix: 'Send fewer chunks per request.',
      },
    );
  }
  if (!request.body || request.headers['content-type'] !== 'application/octet-stream') {
    throw new PvError('PV_INVALID_INPUT', 'Chunks must be sent as application/octet-stream.', {
      fix: 'Set Content-Type: application/octet-stream and send the chunks back to back.',
    });
  }
  return request.body as Readable;
}

/** The upload protocol's routes (DESIGN section 3, docs/protocol.md). */
export function uploadRoutes(uploads: UploadService): FastifyPluginAsyncTypebox {
  return async (app) => {
    // Chunk bodies reach the service as the raw stream: it verifies while it stores.
    app.addContentTypeParser(['application/octet-stream', DELTA_TYPE, FILE_RECORDS_TYPE], (_request, payload, done) => done(null, payload));

    app.post(
      '/uploads',
      {
        bodyLimit: NEGOTIATE_BODY_LIMIT,
        schema: {
          tags: ['uploads'],
          summary: 'Start or resume an upload: commits at once if the user holds the content, else lists the chunks to send',
          body: UploadRequestSchema,
          response: { 200: UploadStatusSchema, 201: UploadStatusSchema },
        },
      },
      async (request, reply) => {
        const status = await uploads.begin(principalOf(request), request.body);
        return reply.status(status.state === 'committed' ? 200 : 201).send(status);
      },
    );

    app.post(
      '/uploads/batch',
      {
        bodyLimit: NEGOTIATE_BODY_LIMIT,
        schema: {
          tags: ['uploads'],
          summary:
            'Several negotiations in one request: for each, what POST /uploads would answer (or its error, as a failure of that one)',
          body: UploadBatchRequestSchema,
          response: { 200: UploadBatchResultSchema },
        },
      },
      async (request) => ({
        results: await uploads.beginMany(principalOf(request), request.body.uploads, { sendWhole: request.body.sendWhole }),
      }),
    );

    app.post(
      '/uploads/files',
      {
        schema: {
          tags: ['uploads'],
          summary: `Send new files whole, many in one body (${FILE_RECORDS_TYPE}: per file its negotiation and its bytes), each checked and committed as if uploaded alone`,
          response: { 200: UploadBatchResultSchema },
        },
      },
      async (request) => {
        if (!request.body || request.headers['content-type'] !== FILE_RECORDS_TYPE) {
          throw new PvError('PV_INVALID_INPUT', `Files sent whole must be sent as ${FILE_RECORDS_TYPE}.`, {
            fix: 'Frame each file as docs/protocol.md says under "Whole files".',
          });
        }
        return { results: await uploads.putWholeFiles(principalOf(request), request.body as Readable) };
      },
    );

    app.get(
      '/uploads/:id',
      { schema: { tags: ['uploads'], summary: 'What an upload still needs', params: UploadParams, response: { 200: UploadStatusSchema } } },
      async (request) => uploads.status(principalOf(request), request.params.id),
    );

    app.put(
      '/uploads/:id/chunks/:hash',
      {
        schema: {
          tags: ['uploads'],
          summary:
            'Send one chunk (application/octet-stream), or a delta of it against base chunks (application/vnd.photovault.delta with ?base=); verified against its hash before a byte is kept; repeating is harmless',
          params: ChunkParams,
          querystring: ChunkQuery,
          response: { 200: ChunkReceiptSchema },
        },
      },
      async (request) => {
        const declared = Number(request.headers['content-length'] ?? 0);
        if (declared > CHUNK_MAX_SIZE) {
          throw new PvError('PV_INVALID_INPUT', `A chunk holds at most ${CHUNK_MAX_SIZE} bytes.`, {
            fix: 'Chunk files with the protocol chunker.',
          });
        }
        if (!request.body) {
          throw new PvError('PV_INVALID_INPUT', `The chunk must be sent as application/octet-stream or ${DELTA_TYPE}.`, {
            fix: 'Set Content-Type: application/octet-stream.',
          });
        }
        const body = request.body as Readable;
        const { id, hash } = request.params;
        if (request.headers['content-type'] !== DELTA_TYPE) return uploads.putChunk(principalOf(request), id, hash, body);
        return uploads.putChunkDelta(principalOf(request), id, hash, deltaBase(request, body), body);
      },
    );

    app.put(
      '/uploads/:id/chunks',
      {
        schema: {
          tags: ['uploads'],
          summary:
            'Send several chunks in one request (application/octet-stream, back to back in the order of ?hashes=), or one delta that rebuilds them back to back (application/vnd.photovault.delta with ?base=), each verified as if sent alone',
          params: UploadParams,
          querystring: ChunksQuery,
          response: { 200: Type.Object({ chunks: Type.Array(ChunkReceiptSchema) }) },
        },
      },
      async (request) => {
        const { id } = request.params;
        const hashes = request.query.hashes.split(',');
        if (request.headers['content-type'] !== DELTA_TYPE || !request.body) {
          return { chunks: await uploads.putChunks(principalOf(request), id, hashes, chunksBody(request)) };
        }
        const body = request.body as Readable;
        return { chunks: await uploads.putChunksDelta(principalOf(request), id, hashes, deltaBase(request, body), body) };
      },
    );

    app.post(
      '/uploads/:id/commit',
      {
        schema: {
          tags: ['uploads'],
          summary:
            'Assemble, verify and record the file version; with ?hashes= and a body, first store those last chunks (as PUT /uploads/{id}/chunks)',
          params: UploadParams,
          querystring: CommitQuery,
          response: { 200: UploadStatusSchema },
        },
      },
      async (request) => {
        const { hashes } = request.query;
        if (hashes === undefined) return uploads.commit(principalOf(request), request.params.id);
        return uploads.commitWith(principalOf(request), request.params.id, hashes.split(','), chunksBody(request));
      },
    );

    app.delete(
      '/uploads/:id',
      { schema: { tags: ['uploads'], summary: 'Abandon an upload', params: UploadParams, response: { 204: Type.Null() } } },
      async (request, reply) => {
        await uploads.cancel(principalOf(request), request.params.id);
        return reply.status(204).send(null);
      },
    );
  };
}
