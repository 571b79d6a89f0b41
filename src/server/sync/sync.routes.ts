import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ChangePageSchema } from '../../core/protocol.js';
import { principalOf } from '../http/authenticate.js';
import type { SyncService } from './sync.service.js';

const ChangesQuery = Type.Object({
  since: Type.Optional(Type.Integer({ minimum: 0, description: 'return changes after this sequence number' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  exclude: Type.Optional(
    Type.Literal('processed', {
      description: 'leave out processing results (kind processed), which change no file: a sync client has no use for them',
    }),
  ),
});

/** The change feed (DESIGN section 4). */
export function syncRoutes(sync: SyncService): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get(
      '/changes',
      {
        schema: {
          tags: ['sync'],
          summary: "The user's changes after a sequence number, oldest first, in pages",
          querystring: ChangesQuery,
          response: { 200: ChangePageSchema },
        },
      },
      async (request) =>
        sync.changes(principalOf(request), request.query.since ?? 0, request.query.limit ?? 500, {
          excludeProcessed: request.query.exclude === 'processed',
        }),
    );

    app.post(
      '/changes/ack',
      {
        schema: {
          tags: ['sync'],
          summary: 'This device has applied every change up to seq',
          body: Type.Object({ seq: Type.Integer({ minimum: 0 }) }),
          response: { 200: Type.Object({ seq: Type.Integer({ description: "the device's cursor now" }) }) },
        },
      },
      async (request) => ({ seq: await sync.acknowledge(principalOf(request), request.body.seq) }),
    );
  };
}
