import type { Readable } from 'node:stream';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { CHUNK_MAX_SIZE } from '../../core/chunker.js';
import { PvError } from '../../core/errors.js';
import { ChunkReceiptSchema, UploadRequestSchema, UploadStatusSchema } from '../../core/protocol.js';
import { principalOf } from '../http/authenticate.js';
import type { UploadService } from './upload.service.js';

const UploadParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
const ChunkParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }), hash: Type.String({ pattern: '^[0-9a-f]{64}$' }) });

// A manifest of MAX_MANIFEST_CHUNKS entries is ~36 MiB of base64; the JSON around it is small.
const NEGOTIATE_BODY_LIMIT = 48 * 1024 * 1024;

/** The upload protocol's routes (DESIGN section 3, docs/protocol.md). */
export function uploadRoutes(uploads: UploadService): FastifyPluginAsyncTypebox {
  return async (app) => {
    // Chunk bodies reach the service as the raw stream: it verifies while it stores.
    app.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload));

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
          summary: 'Send one chunk (application/octet-stream); verified against its hash before a byte is kept; repeating is harmless',
          params: ChunkParams,
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
          throw new PvError('PV_INVALID_INPUT', 'The chunk must be sent as application/octet-stream.', {
            fix: 'Set Content-Type: application/octet-stream.',
          });
        }
        return uploads.putChunk(principalOf(request), request.params.id, request.params.hash, request.body as Readable);
      },
    );

    app.post(
      '/uploads/:id/commit',
      {
        schema: {
          tags: ['uploads'],
          summary: 'Assemble, verify and record the file version',
          params: UploadParams,
          response: { 200: UploadStatusSchema },
        },
      },
      async (request) => uploads.commit(principalOf(request), request.params.id),
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
