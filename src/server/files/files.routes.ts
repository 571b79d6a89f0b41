import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { FILE_RECORDS_TYPE } from '../../core/file-records.js';
import {
  ContentsRequestSchema,
  FileEntrySchema,
  FileListSchema,
  FileVersionSchema,
  ManifestsRequestSchema,
  ManifestsResultSchema,
  TrashEntrySchema,
  VersionManifestSchema,
  VersionPatchSchema,
} from '../../core/protocol.js';
import { principalOf } from '../http/authenticate.js';
import { parseByteRange } from '../http/byte-range.js';
import { sendProblem } from '../http/problem.js';
import type { FilesService } from './files.service.js';

// Paths travel in the query string, not the URL path, so any name survives without ambiguity.
const PathQuery = Type.Object({ path: Type.String({ maxLength: 4096 }) });
const ListQuery = Type.Object({
  dir: Type.Optional(Type.String({ maxLength: 4096 })),
  cursor: Type.Optional(Type.String({ maxLength: 2048 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
});
const ContentQuery = Type.Object({ path: Type.String({ maxLength: 4096 }), version: Type.Optional(Type.String({ maxLength: 64 })) });
const PatchQuery = Type.Object({
  ...ContentQuery.properties,
  base: Type.String({ minLength: 1, maxLength: 64, description: 'the version held' }),
});
const TrashParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

/** The files API: browse, download with ranges and ETags, delete to trash, restore, empty. */
export function filesRoutes(files: FilesService): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get(
      '/files',
      {
        schema: {
          tags: ['files'],
          summary: "One page of a folder's entries, in name order",
          querystring: ListQuery,
          response: { 200: FileListSchema },
        },
      },
      async (request) =>
        files.list(principalOf(request), request.query.dir ?? '', request.query.cursor ?? null, request.query.limit ?? 200),
    );

    app.get(
      '/files/stat',
      { schema: { tags: ['files'], summary: 'One file or folder', querystring: PathQuery, response: { 200: FileEntrySchema } } },
      async (request) => files.stat(principalOf(request), request.query.path),
    );

    app.get(
      '/files/versions',
      {
        schema: {
          tags: ['files'],
          summary: 'The versions of a file, newest first',
          querystring: PathQuery,
          response: { 200: Type.Array(FileVersionSchema) },
        },
      },
      async (request) => files.versions(principalOf(request), request.query.path),
    );

    app.get(
      '/files/manifest',
      {
        schema: {
          tags: ['files'],
          summary: 'The chunks of a file (or a version of it), to download only those not held locally',
          querystring: ContentQuery,
          response: { 200: VersionManifestSchema },
        },
      },
      async (request) => {
        const principal = principalOf(request);
        const version = await files.resolveVersion(principal, request.query.path, request.query.version ?? null);
        return { version, manifest: await files.manifest(principal, version) };
      },
    );

    app.post(
      '/files/manifests',
      {
        schema: {
          tags: ['files'],
          summary: 'The manifests of several files in one request: for each path, what GET /files/manifest would answer, or its error',
          body: ManifestsRequestSchema,
          response: { 200: ManifestsResultSchema },
        },
      },
      async (request) => ({ manifests: await files.manifests(principalOf(request), request.body.paths) }),
    );

    app.post(
      '/files/contents',
      {
        schema: {
          tags: ['files'],
          summary: 'The bytes of several versions in one request, each whole, in the order asked',
          description:
            `Answers ${FILE_RECORDS_TYPE}: per version a record (docs/protocol.md, "Whole files") whose header is ` +
            '{versionId, contentHash, size} followed by its bytes, or {versionId, size: 0, code, detail} when it is not there ' +
            '(PV_NOT_FOUND) or too large to travel with others (PV_PAYLOAD_TOO_LARGE: download it alone).',
          body: ContentsRequestSchema,
          response: { 200: Type.Any({ description: `${FILE_RECORDS_TYPE}: one record per version asked for, in order` }) },
        },
      },
      async (request, reply) => {
        const records = await files.contents(principalOf(request), request.body.versions);
        return reply.type(FILE_RECORDS_TYPE).header('cache-control', 'private, no-store').send(records);
      },
    );

    app.get(
      '/files/patch',
      {
        schema: {
          tags: ['files'],
          summary: 'A file (or a version of it) as a patch of an older version the client holds: manifest diff and binary deltas',
          querystring: PatchQuery,
          response: { 200: VersionPatchSchema },
        },
      },
      async (request) => {
        const principal = principalOf(request);
        const version = await files.resolveVersion(principal, request.query.path, request.query.version ?? null);
        return files.patch(principal, version, request.query.base);
      },
    );

    app.get(
      '/files/content',
      {
        schema: {
          tags: ['files'],
          summary: 'Download a file (or a version of it); supports Range, If-Range and If-None-Match',
          querystring: ContentQuery,
          response: { 200: Type.Any(), 206: Type.Any(), 304: Type.Null() },
        },
      },
      async (request, reply) => {
        const principal = principalOf(request);
        const version = await files.resolveVersion(principal, request.query.path, request.query.version ?? null);
        const etag = `"${version.contentHash}"`;
        reply.header('etag', etag).header('accept-ranges', 'bytes').header('cache-control', 'private, no-cache');
        // Served as opaque bytes: a browser must not guess an HTML type from a user's file.
        reply.header('x-content-type-options', 'nosniff');
        reply.header('last-modified', new Date(version.mtime).toUTCString());
        if (request.headers['if-none-match'] === etag) return reply.status(304).send(null);
        const ifRange = request.headers['if-range'];
        const range = ifRange === undefined || ifRange === etag ? parseByteRange(request.headers.range, version.size) : null;
        if (range === 'unsatisfiable') {
          reply.header('content-range', `bytes */${version.size}`);
          return sendProblem(reply, 416, 'PV_RANGE_NOT_SATISFIABLE', `The file has ${version.size} bytes.`);
        }
        const stream = await files.read(principal, version, range ?? undefined);
        reply.type('application/octet-stream');
        if (range) {
          reply.status(206).header('content-range', `bytes ${range.start}-${range.end}/${version.size}`);
          reply.header('content-length', range.end - range.start + 1);
        } else {
          reply.header('content-length', version.size);
        }
        return reply.send(stream);
      },
    );

    app.delete(
      '/files',
      {
        schema: {
          tags: ['files'],
          summary: 'Move a file or folder to the trash',
          querystring: PathQuery,
          response: { 200: TrashEntrySchema },
        },
      },
      async (request) => files.remove(principalOf(request), request.query.path),
    );

    app.post(
      '/files/move',
      {
        schema: {
          tags: ['files'],
          summary: 'Move or rename a file or folder (with its contents) to a free path',
          body: Type.Object({ from: Type.String({ maxLength: 4096 }), to: Type.String({ maxLength: 4096 }) }),
          response: { 200: FileEntrySchema },
        },
      },
      async (request) => files.move(principalOf(request), request.body.from, request.body.to),
    );

    app.get(
      '/trash',
      { schema: { tags: ['trash'], summary: 'List the trash', response: { 200: Type.Array(TrashEntrySchema) } } },
      async (request) => files.trash(principalOf(request)),
    );

    app.post(
      '/trash/:id/restore',
      {
        schema: { tags: ['trash'], summary: 'Restore a trash entry to its path', params: TrashParams, response: { 200: TrashEntrySchema } },
      },
      async (request) => files.restore(principalOf(request), request.params.id),
    );

    app.delete(
      '/trash',
      {
        schema: {
          tags: ['trash'],
          summary: 'Empty the trash for good',
          response: { 200: Type.Object({ entries: Type.Integer({ description: 'trash entries deleted' }) }) },
        },
      },
      async (request) => ({ entries: await files.emptyTrash(principalOf(request)) }),
    );
  };
}
