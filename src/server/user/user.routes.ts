import { Type } from 'typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ApiKeySchema, DeviceSchema, LoginRequestSchema, LoginResponseSchema } from '../../core/protocol.js';
import { principalOf } from '../http/authenticate.js';
import type { SyncService } from '../sync/sync.service.js';
import type { Device, UserService } from './user.service.js';

const ApiKeyCreatedSchema = Type.Object({ token: Type.String(), apiKey: ApiKeySchema });
const MeSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  isAdmin: Type.Boolean(),
  deviceId: Type.Union([Type.String(), Type.Null()]),
});
const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

/** Login: the one public route of the user service. */
export function loginRoutes(users: UserService): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.post(
      '/auth/login',
      {
        schema: {
          tags: ['auth'],
          summary: 'Log in; registers the device and returns a session token',
          body: LoginRequestSchema,
          response: { 200: LoginResponseSchema },
        },
      },
      async (request) => {
        const { user, password, deviceName, deviceId } = request.body;
        const result = await users.login({ name: user, password, deviceName, deviceId, clientAddress: request.ip });
        return {
          token: result.token,
          expiresAt: result.expiresAt.toISOString(),
          user: { id: result.user.id, name: result.user.name, isAdmin: result.user.isAdmin },
          device: { id: result.device.id, name: result.device.name },
        };
      },
    );
  };
}

/** The caller's session, API keys and devices; registered behind bearer authentication. */
export function accountRoutes(users: UserService, sync: SyncService): FastifyPluginAsyncTypebox {
  return async (authed) => {
    authed.get(
      '/auth/me',
      { schema: { tags: ['auth'], summary: 'Who the token belongs to', response: { 200: MeSchema } } },
      async (request) => {
        const principal = principalOf(request);
        return { id: principal.userId, name: principal.userName, isAdmin: principal.isAdmin, deviceId: principal.deviceId };
      },
    );

    authed.post(
      '/auth/logout',
      { schema: { tags: ['auth'], summary: 'End this session', response: { 204: Type.Null() } } },
      async (request, reply) => {
        await users.logout(principalOf(request));
        return reply.status(204).send(null);
      },
    );

    authed.get(
      '/api-keys',
      { schema: { tags: ['auth'], summary: 'List API keys', response: { 200: Type.Array(ApiKeySchema) } } },
      async (request) => (await users.listApiKeys(principalOf(request))).map(apiKeyView),
    );

    authed.post(
      '/api-keys',
      {
        schema: {
          tags: ['auth'],
          summary: 'Create an API key for scripts; the token is shown once',
          body: Type.Object({ label: Type.Optional(Type.String({ maxLength: 128 })) }),
          response: { 201: ApiKeyCreatedSchema },
        },
      },
      async (request, reply) => {
        const { token, apiKey } = await users.createApiKey(principalOf(request), request.body.label ?? null);
        return reply.status(201).send({ token, apiKey: apiKeyView(apiKey) });
      },
    );

    authed.delete(
      '/api-keys/:id',
      { schema: { tags: ['auth'], summary: 'Revoke an API key', params: IdParams, response: { 204: Type.Null() } } },
      async (request, reply) => {
        await users.revokeApiKey(principalOf(request), request.params.id);
        return reply.status(204).send(null);
      },
    );

    authed.get(
      '/devices',
      { schema: { tags: ['devices'], summary: "List the user's devices", response: { 200: Type.Array(DeviceSchema) } } },
      async (request) => {
        const principal = principalOf(request);
        const [devices, cursors, latest] = await Promise.all([
          users.listDevices(principal),
          sync.cursors(principal.userId),
          sync.latest(principal.userId),
        ]);
        return devices.map((device) => deviceView(device, principal.deviceId, cursors.get(device.id) ?? 0, latest));
      },
    );

    authed.delete(
      '/devices/:id',
      { schema: { tags: ['devices'], summary: 'Revoke a device and its sessions', params: IdParams, response: { 204: Type.Null() } } },
      async (request, reply) => {
        await users.revokeDevice(principalOf(request), request.params.id);
        return reply.status(204).send(null);
      },
    );
  };
}

function apiKeyView(key: { id: string; label: string | null; createdAt: Date; lastUsedAt: Date }) {
  return { id: key.id, label: key.label, createdAt: key.createdAt.toISOString(), lastUsedAt: key.lastUsedAt.toISOString() };
}

function deviceView(device: Device, currentId: string | null, cursor: number, latest: number) {
  return {
    id: device.id,
    name: device.name,
    createdAt: device.createdAt.toISOString(),
    lastSeenAt: device.lastSeenAt.toISOString(),
    revokedAt: device.revokedAt?.toISOString() ?? null,
    current: device.id === currentId,
    cursor,
    inSync: cursor >= latest,
  };
}
