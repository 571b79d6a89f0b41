import { Counter, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { serveWorkerEndpoint, type WorkerEndpoint } from '../../src/workers/worker-endpoint.js';

describe('worker endpoint', () => {
  let endpoint: WorkerEndpoint | undefined;
  afterEach(async () => {
    await endpoint?.close();
  });

  it('answers probes on /healthz and serves its registry on /metrics, nothing else', async () => {
    const registry = new Registry();
    new Counter({ name: 'photovault_test_total', help: 'a counter of the test', registers: [registry] }).inc(3);
    endpoint = await serveWorkerEndpoint('127.0.0.1', 0, registry);
    expect(endpoint.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    const health = await fetch(`${endpoint.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
    const metrics = await fetch(`${endpoint.url}/metrics`);
    expect(metrics.headers.get('content-type')).toBe(registry.contentType);
    expect(await metrics.text()).toContain('photovault_test_total 3');
    expect((await fetch(`${endpoint.url}/metrics`, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(`${endpoint.url}/`)).status).toBe(404);
    expect((await fetch(`${endpoint.url}/healthz`, { method: 'POST' })).status).toBe(405);
  });

  it('fails to start on a port that is taken, naming it', async () => {
    endpoint = await serveWorkerEndpoint('127.0.0.1', 0, new Registry());
    const port = Number(new URL(endpoint.url).port);
    const taken = serveWorkerEndpoint('127.0.0.1', port, new Registry());
    await expect(taken).rejects.toMatchObject({ code: 'EADDRINUSE' });
    await expect(taken).rejects.toThrow(`127.0.0.1:${port}`);
  });
});
