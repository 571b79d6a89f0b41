import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createTestServer, type TestServer } from '../support/server.js';

/** Opens the sync socket and resolves with the first message, or the HTTP status that refused the upgrade. */
function openSyncSocket(port: number, token: string): Promise<{ message?: { type: string }; refusedWith?: number }> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/api/v1/sync`, { headers: { authorization: `Bearer ${token}` } });
  return new Promise((resolve, reject) => {
    socket.once('message', (data) => {
      socket.close();
      resolve({ message: JSON.parse(data.toString()) as { type: string } });
    });
    socket.once('unexpected-response', (_request, response) => {
      socket.terminate();
      resolve({ refusedWith: response.statusCode });
    });
    socket.once('error', reject);
  });
}

describe('a server serving some of the API services', () => {
  let whole: TestServer;
  let files: TestServer;
  let sync: TestServer;
  let filesToken: string;
  let syncToken: string;

  beforeAll(async () => {
    whole = await createTestServer('sqlite');
    files = await createTestServer('sqlite', { server: { services: ['files'] } });
    sync = await createTestServer('sqlite', { server: { services: 'sync,users' } });
    filesToken = (await files.login('dana')).token;
    syncToken = (await sync.login('dana')).token;
    for (const server of [files, sync]) await server.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    for (const server of [whole, files, sync]) await server?.close();
  });

  const port = (server: TestServer) => (server.app.server.address() as { port: number }).port;

  it('answers the routes of its services and no others', async () => {
    const authorization = `Bearer ${filesToken}`;
    const listing = await files.app.inject({ url: '/api/v1/files?path=', headers: { authorization } });
    expect(listing.statusCode).toBe(200);
    for (const [method, url] of [
      ['GET', '/api/v1/changes'],
      ['GET', '/api/v1/files/media?path=a.jpg'],
      ['POST', '/api/v1/uploads'],
      ['POST', '/api/v1/auth/login'],
    ] as const) {
      const answer = await files.app.inject({ method, url, headers: { authorization } });
      expect(answer.statusCode, `${method} ${url}`).toBe(404);
      expect(answer.json()).toMatchObject({ code: 'PV_NOT_FOUND', detail: expect.stringContaining('No route') });
    }
  });

  it('serves health, metrics and the whole API document whatever its services', async () => {
    expect((await files.app.inject({ url: '/healthz' })).json()).toEqual({ status: 'ok' });
    const metrics = await files.app.inject({ url: '/metrics' });
    expect(metrics.statusCode).toBe(200);
    expect(metrics.body).toContain('photovault_http_request_duration_seconds');
    const document = (await files.app.inject({ url: '/api/v1/openapi.json' })).json();
    const wholeDocument = (await whole.app.inject({ url: '/api/v1/openapi.json' })).json();
    expect(Object.keys(document.paths)).toContain('/api/v1/changes');
    expect(document).toEqual(wholeDocument);
  });

  it('takes the sync WebSocket only where the sync service runs', async () => {
    expect(await openSyncSocket(port(files), filesToken)).toEqual({ refusedWith: 404 });
    expect((await openSyncSocket(port(sync), syncToken)).message).toMatchObject({ type: 'hello' });
  });
});
