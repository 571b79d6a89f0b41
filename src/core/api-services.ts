/**
 * The services of the HTTP API (DESIGN sections 1 and 2): groups of routes that one server
 * process can serve without the others, so the cluster form can run a Deployment per service
 * behind a proxy that routes by path. Every process serves `/healthz`, `/metrics` and the
 * OpenAPI document whatever services it runs.
 *
 *   users   /api/v1/auth/*, /api/v1/api-keys*, /api/v1/devices*
 *   upload  /api/v1/uploads*
 *   files   /api/v1/files* (but /api/v1/files/media), /api/v1/trash*
 *   sync    /api/v1/changes*, the WebSocket /api/v1/sync
 *   media   /api/v1/files/media, /api/v1/media/*
 */
export const API_SERVICES = ['users', 'upload', 'files', 'sync', 'media'] as const;
export type ApiService = (typeof API_SERVICES)[number];

/** Whether a name is one of the API's services. */
export function isApiService(name: string): name is ApiService {
  return (API_SERVICES as readonly string[]).includes(name);
}
