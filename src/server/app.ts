import swagger, { type SwaggerOptions } from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance, LogController } from 'fastify';
import { API_SERVICES, type ApiService } from '../core/api-services.js';
import { API_PREFIX } from '../core/protocol.js';
import type { ServerContext } from './context.js';
import { filesRoutes } from './files/files.routes.js';
import { bearerAuth } from './http/authenticate.js';
import { processingRoutes } from './processing/processing.routes.js';
import { problemErrorHandler, sendProblem } from './http/problem.js';
import { SyncHub } from './sync/sync.hub.js';
import { syncRoutes } from './sync/sync.routes.js';
import { uploadRoutes } from './upload/upload.routes.js';
import { accountRoutes, loginRoutes } from './user/user.routes.js';

const VERSION = '0.1.0';

function trustedProxies(setting: string): boolean | string {
  if (setting === '*') return true;
  return setting === '' ? false : setting;
}

const OPENAPI_OPTIONS: SwaggerOptions = {
  openapi: {
    info: { title: 'photovault API', version: VERSION, description: 'See docs/protocol.md for the upload protocol.' },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    security: [{ bearer: [] }],
  },
};

export interface AppOptions {
  /** pino options or false; tests pass false. */
  logger?: boolean | { level: string };
}

/** Builds the HTTP app over a context; tested with inject(), served by startServer. */
export async function buildApp(context: ServerContext, options: AppOptions = {}): Promise<FastifyInstance> {
  // Fastify's own per-request lines would be two info lines per uploaded chunk (tens of
  // thousands per GiB); requests are logged at debug below instead, errors always.
  const app = Fastify({
    logger: options.logger ?? false,
    logController: new LogController({ disableRequestLogging: true }),
    // Client addresses key the login rate limit, so a forwarded address counts only from a
    // proxy the operator named; otherwise anyone could pick a fresh one per attempt.
    trustProxy: trustedProxies(context.config.server.trustProxy),
    bodyLimit: 1024 * 1024,
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.decorateRequest('principal', null);
  app.setErrorHandler(problemErrorHandler);
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, 404, 'PV_NOT_FOUND', `No route ${request.method} ${request.url.split('?')[0]}.`),
  );

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    context.metrics.httpDuration.observe({ method: request.method, route, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
    request.log.debug({ method: request.method, route, status: reply.statusCode, ms: reply.elapsedTime }, 'request');
  });

  await app.register(swagger, OPENAPI_OPTIONS);

  const services = new Set(context.config.server.services);
  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) =>
    reply.type(context.metrics.registry.contentType).send(await context.metrics.registry.metrics()),
  );
  // The document always describes the whole API, so a proxy in front of a Deployment per
  // service can send its requests to any of them.
  let wholeApi: Promise<unknown> | null = null;
  app.get(`${API_PREFIX}/openapi.json`, { schema: { hide: true } }, async () => {
    if (services.size === API_SERVICES.length) return app.swagger();
    wholeApi ??= wholeApiDocument(context).catch((error: unknown) => {
      wholeApi = null;
      throw error;
    });
    return wholeApi;
  });

  if (services.has('sync')) {
    const hub = new SyncHub(context.users, context.sync, context.notifier, context.presence, app.log);
    hub.attach(app.server);
    // Before the HTTP server closes: its close waits for open connections, and sync sockets stay open.
    app.addHook('preClose', () => hub.close());
  }

  await registerServices(app, context, services);
  return app;
}

/** Registers the routes of the named services under the API prefix (the sync WebSocket is attached apart). */
async function registerServices(app: FastifyInstance, context: ServerContext, services: ReadonlySet<ApiService>): Promise<void> {
  if (services.has('users')) await app.register(loginRoutes(context.users), { prefix: API_PREFIX });
  await app.register(
    async (authenticated) => {
      authenticated.addHook('onRequest', bearerAuth(context.users));
      if (services.has('users')) await authenticated.register(accountRoutes(context.users, context.sync));
      if (services.has('upload')) await authenticated.register(uploadRoutes(context.uploads));
      if (services.has('files')) await authenticated.register(filesRoutes(context.files));
      if (services.has('sync')) await authenticated.register(syncRoutes(context.sync));
      if (services.has('media')) await authenticated.register(processingRoutes(context.processing));
    },
    { prefix: API_PREFIX },
  );
}

/** The OpenAPI document of every service, from an app that registers them all and never listens. */
async function wholeApiDocument(context: ServerContext): Promise<unknown> {
  const app = Fastify().withTypeProvider<TypeBoxTypeProvider>();
  try {
    app.decorateRequest('principal', null);
    await app.register(swagger, OPENAPI_OPTIONS);
    await registerServices(app, context, new Set(API_SERVICES));
    await app.ready();
    return app.swagger();
  } finally {
    await app.close();
  }
}
