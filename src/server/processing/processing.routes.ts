import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { MediaViewSchema } from '../../core/protocol.js';
import { principalOf } from '../http/authenticate.js';
import type { ProcessingService } from './processing.service.js';

const MediaQuery = Type.Object({ path: Type.String({ maxLength: 4096 }), version: Type.Optional(Type.String({ maxLength: 64 })) });
const ContentParams = Type.Object({ hash: Type.String({ pattern: '^[0-9a-f]{64}$' }) });
const ThumbnailParams = Type.Object({ ...ContentParams.properties, size: Type.Integer() });
const HlsParams = Type.Object({ ...ContentParams.properties, '*': Type.String({ maxLength: 512 }) });

const HLS_TYPES: Record<string, string> = {
  m3u8: 'application/vnd.apple.mpegurl',
  ts: 'video/mp2t',
  m4s: 'video/iso.segment',
  mp4: 'video/mp4',
};

/**
 * Derived files are named by content, so they only change when a job is run again: a day in
 * the browser's cache, then revalidated by ETag. Private: they are as personal as the original.
 */
const DERIVED_CACHE_CONTROL = 'private, max-age=86400';

/** Metadata, thumbnails and HLS renditions, behind the same authorisation as the original. */
export function processingRoutes(processing: ProcessingService): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get(
      '/files/media',
      {
        schema: {
          tags: ['media'],
          summary: "A photo's or video's metadata, processing jobs, thumbnails and HLS ladder",
          querystring: MediaQuery,
          response: { 200: MediaViewSchema },
        },
      },
      async (request) => processing.media(principalOf(request), request.query.path, request.query.version ?? null),
    );

    app.get(
      '/media/:hash/thumbnails/:size',
      {
        schema: {
          tags: ['media'],
          summary: 'A WebP thumbnail (size 64, 256, 512 or 1920: the longest edge, never upscaled); supports If-None-Match',
          params: ThumbnailParams,
        },
      },
      async (request, reply) => {
        const { hash, size } = request.params;
        const thumbnail = await processing.thumbnail(principalOf(request), hash, size);
        if (notModified(request, reply, `"${hash}-${size}"`)) return reply.status(304).send(null);
        return reply
          .type('image/webp')
          .header('content-length', thumbnail.bytes)
          .send(await thumbnail.open());
      },
    );

    app.get(
      '/media/:hash/hls/*',
      {
        schema: {
          tags: ['media'],
          summary: "A file of a video's HLS ladder: master.m3u8, a rendition's playlist or a segment",
          params: HlsParams,
        },
      },
      async (request, reply) => {
        const { hash, '*': file } = request.params;
        const derived = await processing.hlsFile(principalOf(request), hash, file);
        if (notModified(request, reply, `"${hash}-${file}"`)) return reply.status(304).send(null);
        const extension = file.slice(file.lastIndexOf('.') + 1);
        return reply
          .type(HLS_TYPES[extension] ?? 'application/octet-stream')
          .header('content-length', derived.bytes)
          .send(await derived.open());
      },
    );
  };
}

/** Sets the caching headers of a derived file; true when the client's copy is current. */
function notModified(request: FastifyRequest, reply: FastifyReply, etag: string): boolean {
  reply.header('etag', etag).header('cache-control', DERIVED_CACHE_CONTROL).header('x-content-type-options', 'nosniff');
  return request.headers['if-none-match'] === etag;
}
