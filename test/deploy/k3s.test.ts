import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { parseAllDocuments } from 'yaml';
import { API_SERVICES, type ApiService } from '../../src/core/api-services.js';
import { loadServerConfig, serverConfigEnvNames, type ServerConfig } from '../../src/core/config.js';
import { JOB_KINDS } from '../../src/core/media.js';
import { SYNC_PATH } from '../../src/server/sync/sync.hub.js';
import { JobMetrics } from '../../src/workers/job-metrics.js';
import { serveWorkerEndpoint } from '../../src/workers/worker-endpoint.js';
import {
  type ConfigMap,
  type Container,
  containerEnv,
  findPort,
  flagValue,
  type IngressRoute,
  K3S_DIR,
  envFilesOf,
  loadKustomizations,
  loadManifests,
  manifestFiles,
  ofKind,
  readEnvFile,
  type Service,
  traefikServicesFor,
  type Workload,
} from '../support/k3s-manifests.js';
import { createTestServer, type TestServer } from '../support/server.js';

/**
 * The k3s manifests (k3s/) against the code they deploy, offline: what a typo or a stale
 * manifest would break at `kubectl apply` or, worse, at run time, checked here instead.
 */
const manifests = loadManifests();
const kustomizations = loadKustomizations();
const workloads = ofKind<Workload>(manifests, 'Deployment', 'StatefulSet');
const services = ofKind<Service>(manifests, 'Service');
const configMaps = new Map(ofKind<ConfigMap>(manifests, 'ConfigMap').map((map) => [map.metadata.name, map.data] as const));
// The Secrets kustomize generates, with the placeholder values of their committed examples.
const secrets = new Map(
  kustomizations.flatMap(({ file, kustomization }) =>
    (kustomization.secretGenerator ?? []).map(
      (generator) =>
        [
          generator.name,
          Object.assign({}, ...envFilesOf(generator).map((env) => readEnvFile(join(K3S_DIR, dirname(file), `${env}.example`)))),
        ] as const,
    ),
  ),
);

interface PhotovaultContainer {
  workload: Workload & { file: string };
  container: Container;
  role: 'server' | 'worker';
  env: Record<string, string>;
}
const photovault: PhotovaultContainer[] = workloads.flatMap((workload) =>
  workload.spec.template.spec.containers
    .filter((container) => container.image === 'photovault')
    .map((container) => {
      const command = (container.args ?? []).slice(0, 2).join(' ');
      if (command !== 'server start' && command !== 'worker start') throw new Error(`${workload.metadata.name}: runs ${command}`);
      return {
        workload,
        container,
        role: command === 'server start' ? ('server' as const) : ('worker' as const),
        env: containerEnv(workload.metadata.name, container, configMaps, secrets),
      };
    }),
);
const servers = photovault.filter((p) => p.role === 'server');
const workers = photovault.filter((p) => p.role === 'worker');

/** The API services a server container's --services flag names; every one when it names none. */
function servicesOf(container: Container): string[] {
  return (flagValue(container.args ?? [], '--services') ?? API_SERVICES.join(',')).split(',').map((name) => name.trim());
}

/** The workloads whose pods a Service selects (one, in manifests that are right). */
function selectedWorkloads(service: Service): (Workload & { file: string })[] {
  return workloads.filter(
    (workload) =>
      workload.metadata.namespace === service.metadata.namespace &&
      Object.entries(service.spec.selector).every(([key, value]) => workload.spec.template.metadata.labels[key] === value),
  );
}

describe('the k3s manifests', () => {
  let configDir: string;
  /** The config a container would load: its environment, its flags, and no config file. */
  const configOf = ({ container, env, role }: PhotovaultContainer): ServerConfig =>
    loadServerConfig({
      env: { ...env, PHOTOVAULT_CONFIG: join(configDir, 'config.json') },
      flags: role === 'server' ? { server: { services: servicesOf(container).join(',') } } : {},
    });

  beforeAll(() => {
    configDir = mkdtempSync(join(tmpdir(), 'pv-k3s-'));
    writeFileSync(join(configDir, 'config.json'), '{}');
  });
  afterAll(() => rmSync(configDir, { recursive: true, force: true }));

  it('are all applied: each YAML file is a resource of exactly one kustomization', () => {
    const listed = kustomizations.flatMap(({ file, kustomization }) =>
      (kustomization.resources ?? []).map((resource) => join(dirname(file), resource)),
    );
    const files = manifestFiles().filter((file) => !file.endsWith('kustomization.yaml'));
    expect([...listed].sort()).toEqual(files);
    for (const resource of listed) expect(existsSync(join(K3S_DIR, resource)), resource).toBe(true);
  });

  it('generate their secrets from a file git ignores, whose committed example holds placeholders', () => {
    const ignored = readFileSync(join(K3S_DIR, '.gitignore'), 'utf8').split('\n');
    for (const { file, kustomization } of kustomizations) {
      for (const generator of kustomization.secretGenerator ?? []) {
        expect(envFilesOf(generator), generator.name).not.toEqual([]);
        for (const env of envFilesOf(generator)) {
          expect(ignored).toContain(env);
          for (const [key, value] of Object.entries(readEnvFile(join(K3S_DIR, dirname(file), `${env}.example`)))) {
            if (key.endsWith('password')) expect(value, key).toMatch(/^CHANGE-ME/);
          }
        }
      }
    }
    expect(secrets.get('photovault-secrets')).toBeDefined();
  });

  it('put every namespaced object in the photovault namespace, under a name no other object of its kind has', () => {
    const clusterScoped = new Set(['Namespace', 'StorageClass']);
    const seen = new Set<string>();
    for (const manifest of manifests) {
      const where = `${manifest.file}: ${manifest.kind} ${manifest.metadata.name}`;
      if (manifest.kind === 'HelmChartConfig') expect(manifest.metadata.namespace, where).toBe('kube-system');
      else if (clusterScoped.has(manifest.kind)) expect(manifest.metadata.namespace, where).toBeUndefined();
      else expect(manifest.metadata.namespace, where).toBe('photovault');
      const key = `${manifest.kind}/${manifest.metadata.namespace}/${manifest.metadata.name}`;
      expect(seen.has(key), `${where} is defined twice`).toBe(false);
      seen.add(key);
    }
  });

  it('set only PHOTOVAULT_* variables the config loader reads, selecting PostgreSQL, Redis, NATS and S3 with workers apart', () => {
    const known = new Set(serverConfigEnvNames());
    expect(photovault.length).toBeGreaterThan(0);
    for (const entry of photovault) {
      const where = entry.workload.metadata.name;
      const unknown = Object.keys(entry.env).filter((name) => name.startsWith('PHOTOVAULT_') && !known.has(name));
      expect(unknown, where).toEqual([]);
      const config = configOf(entry);
      expect(config.database.url, where).toMatch(/^postgres:\/\//);
      expect(config.redis.url, where).toMatch(/^redis:\/\//);
      expect(config.nats.url, where).toMatch(/^nats:\/\//);
      expect(config.s3.endpoint, where).toMatch(/^http:\/\//);
      expect(config.processing.inProcess, where).toBe(false);
      // The warm and cold tiers on the MinIO with slow disks, the rest on the fast one.
      for (const tier of ['photos-warm', 'photos-cold'] as const)
        expect(config.storage.buckets[tier]?.endpoint, where).toBe('http://minio-slow:9000');
      expect(config.s3.endpoint, where).toBe('http://minio-fast:9000');
    }
  });

  it('point photovault at backends that are Services of the manifests, on ports they expose', () => {
    const defaultPorts: Record<string, number> = { 'postgres:': 5432, 'redis:': 6379, 'nats:': 4222, 'http:': 80, 'https:': 443 };
    for (const entry of photovault) {
      const config = configOf(entry);
      const urls = [
        config.database.url,
        config.redis.url,
        config.nats.url,
        config.s3.endpoint,
        ...Object.values(config.storage.buckets).map((bucket) => bucket?.endpoint),
      ].filter((url): url is string => url !== undefined);
      for (const url of urls) {
        const { hostname, port, protocol } = new URL(url);
        const service = services.find((s) => s.metadata.name === hostname && s.metadata.namespace === entry.workload.metadata.namespace);
        expect(service, `${entry.workload.metadata.name}: no Service ${hostname} for ${protocol}//${hostname}`).toBeDefined();
        expect(
          service!.spec.ports.map((p) => p.port),
          `${hostname}`,
        ).toContain(Number(port || defaultPorts[protocol]));
      }
    }
  });

  it('run workers of job kinds that exist, every kind in some Deployment', () => {
    const kinds = workers.flatMap(({ workload, container }) => {
      const only = flagValue(container.args ?? [], '--only');
      expect(only, `${workload.metadata.name} names its job kinds`).toBeDefined();
      return only!.split(',').map((kind) => kind.trim());
    });
    for (const kind of kinds) expect(JOB_KINDS).toContain(kind);
    expect(new Set(kinds)).toEqual(new Set(JOB_KINDS));
  });

  it('run servers of API services that exist, every service in some Deployment, none twice', () => {
    const named = servers.flatMap(({ container }) => servicesOf(container));
    for (const name of named) expect(API_SERVICES).toContain(name);
    expect([...named].sort()).toEqual([...API_SERVICES].sort());
  });

  it('give every Service the pods of one workload and ports they have, and every workload taking traffic a Service', () => {
    for (const service of services) {
      const selected = selectedWorkloads(service);
      expect(
        selected.map((w) => w.metadata.name),
        `Service ${service.metadata.name} selects one workload`,
      ).toHaveLength(1);
      const containers = selected[0]!.spec.template.spec.containers;
      for (const port of service.spec.ports) {
        const target = port.targetPort ?? port.port;
        expect(
          containers.some((container) => findPort(container, target)),
          `Service ${service.metadata.name} targets port ${target}`,
        ).toBe(true);
      }
    }
    for (const workload of workloads) {
      const name = workload.metadata.name;
      for (const [key, value] of Object.entries(workload.spec.selector.matchLabels)) {
        expect(workload.spec.template.metadata.labels[key], `${name}: selector ${key}`).toBe(value);
      }
      if (workload.kind === 'StatefulSet') expect(services.map((s) => s.metadata.name)).toContain(workload.spec.serviceName);
      // A port only for probes and Prometheus (named metrics: a worker's) needs no Service.
      const listens = workload.spec.template.spec.containers.some((container) =>
        (container.ports ?? []).some((port) => port.name !== 'metrics'),
      );
      if (listens)
        expect(
          services.some((s) => selectedWorkloads(s).includes(workload)),
          `${name} has a Service`,
        ).toBe(true);
    }
  });

  it('probe and scrape ports the containers have', () => {
    for (const workload of workloads) {
      for (const container of workload.spec.template.spec.containers) {
        for (const probe of [container.startupProbe, container.readinessProbe, container.livenessProbe]) {
          const port = probe?.httpGet?.port ?? probe?.tcpSocket?.port;
          if (port !== undefined) expect(findPort(container, port), `${workload.metadata.name}: probe port ${port}`).toBeDefined();
        }
      }
      const annotations = workload.spec.template.metadata.annotations ?? {};
      if (annotations['prometheus.io/scrape'] === 'true') {
        const port = Number(annotations['prometheus.io/port']);
        expect(
          workload.spec.template.spec.containers.some((container) => findPort(container, port)),
          `${workload.metadata.name}: scrape port ${port}`,
        ).toBe(true);
      }
    }
  });

  it('keep PostgreSQL connections within max_connections with every photovault pod running', () => {
    const postgres = workloads.find((w) => w.metadata.name === 'postgres')!.spec.template.spec.containers[0]!;
    const setting = (postgres.args ?? []).find((arg) => arg.startsWith('max_connections='));
    const maxConnections = Number(setting?.split('=')[1] ?? 100);
    // docs/configuration.md: each process keeps poolSize connections, plus one while it starts;
    // PostgreSQL keeps 3 for superusers.
    const needed = photovault.reduce(
      (sum, entry) => sum + (entry.workload.spec.replicas ?? 1) * (configOf(entry).database.poolSize + 1),
      3,
    );
    expect(needed).toBeLessThanOrEqual(maxConnections);
  });

  describe('against the server itself', () => {
    /** A server context per distinct --services list of the Deployments, plus one serving everything. */
    const apps = new Map<string, TestServer>();
    const appFor = (list: readonly string[]) => apps.get([...list].sort().join(','))!;

    beforeAll(async () => {
      for (const list of [[...API_SERVICES], ...servers.map(({ container }) => servicesOf(container))]) {
        const key = [...list].sort().join(',');
        if (!apps.has(key)) apps.set(key, await createTestServer('sqlite', { server: { services: list } }));
      }
    });
    afterAll(async () => {
      for (const app of apps.values()) await app.close();
    });

    it('probe routes the server answers, and scrape its /metrics on every server pod', async () => {
      for (const server of servers) {
        const { workload, container } = server;
        const app = appFor(servicesOf(container)).app;
        const config = configOf(server);
        expect(findPort(container, config.server.port), `${workload.metadata.name} listens where its config says`).toBeDefined();
        for (const probe of [container.startupProbe, container.readinessProbe, container.livenessProbe]) {
          expect(probe?.httpGet, `${workload.metadata.name} probes over HTTP`).toBeDefined();
          const answer = await app.inject({ url: probe!.httpGet!.path });
          expect(answer.statusCode, `${workload.metadata.name}: ${probe!.httpGet!.path}`).toBe(200);
        }
        const annotations = workload.spec.template.metadata.annotations ?? {};
        expect(annotations['prometheus.io/scrape'], workload.metadata.name).toBe('true');
        expect(Number(annotations['prometheus.io/port'])).toBe(config.server.port);
        const metrics = await app.inject({ url: annotations['prometheus.io/path'] ?? '/metrics' });
        expect(metrics.statusCode).toBe(200);
        expect(metrics.body).toContain('photovault_http_request_duration_seconds');
      }
    });

    it("probe every worker's /healthz and scrape its /metrics where its config puts them", async () => {
      const registry = new Registry();
      new JobMetrics(registry);
      const endpoint = await serveWorkerEndpoint('127.0.0.1', 0, registry);
      try {
        for (const worker of workers) {
          const { workload, container } = worker;
          const port = configOf(worker).processing.port;
          expect(findPort(container, port), `${workload.metadata.name} listens where its config says`).toBeDefined();
          expect(container.livenessProbe?.httpGet, `${workload.metadata.name} has a liveness probe`).toBeDefined();
          expect(findPort(container, container.livenessProbe!.httpGet!.port)?.containerPort).toBe(port);
          expect((await fetch(endpoint.url + container.livenessProbe!.httpGet!.path)).status).toBe(200);
          const annotations = workload.spec.template.metadata.annotations ?? {};
          expect(annotations['prometheus.io/scrape'], workload.metadata.name).toBe('true');
          expect(Number(annotations['prometheus.io/port'])).toBe(port);
          const metrics = await fetch(endpoint.url + (annotations['prometheus.io/path'] ?? '/metrics'));
          expect(await metrics.text()).toContain('photovault_job_runs_total');
        }
      } finally {
        await endpoint.close();
      }
    });

    it('route every API route through Traefik to a Deployment that serves it, and nothing outside /api/v1', async () => {
      const [ingress, ...more] = ofKind<IngressRoute>(manifests, 'IngressRoute');
      expect(more).toEqual([]);
      const routes = ingress!.spec.routes;
      const deploymentServing = (path: string) => {
        const target = traefikServicesFor(routes, path);
        expect(target, `Traefik routes ${path}`).not.toBeNull();
        expect(target, path).toHaveLength(1);
        const service = services.find((s) => s.metadata.name === target![0])!;
        expect(service, `${path}: Service ${target![0]}`).toBeDefined();
        const [workload] = selectedWorkloads(service);
        return servers.find((s) => s.workload === workload)!;
      };

      const document = (await appFor(API_SERVICES).app.inject({ url: '/api/v1/openapi.json' })).json() as {
        paths: Record<string, Record<string, unknown>>;
      };
      let checked = 0;
      for (const [template, operations] of Object.entries(document.paths)) {
        const path = template.replace(/\{[^}]+\}/g, 'x');
        const server = deploymentServing(path);
        expect(server, `${path} goes to a photovault server`).toBeDefined();
        for (const method of Object.keys(operations)) {
          const answer = await appFor(servicesOf(server.container)).app.inject({ method: method.toUpperCase() as 'GET', url: path });
          const unrouted = answer.statusCode === 404 && (answer.json() as { detail?: string }).detail?.startsWith('No route');
          expect(unrouted, `${method.toUpperCase()} ${template} reaches ${server.workload.metadata.name}, which does not serve it`).toBe(
            false,
          );
          checked++;
        }
      }
      expect(checked).toBeGreaterThan(30);
      // The WebSocket is no OpenAPI route: its Deployment must run the sync service.
      expect(servicesOf(deploymentServing(SYNC_PATH).container)).toContain('sync' satisfies ApiService);
      for (const internal of ['/healthz', '/metrics', '/']) expect(traefikServicesFor(routes, internal), internal).toBeNull();
    });

    it('chart in Grafana only metrics the servers and workers export', async () => {
      const dashboards = configMaps.get('grafana-dashboards')!;
      const expressions = Object.values(dashboards).flatMap((json) =>
        (JSON.parse(json) as { panels: { targets: { expr: string }[] }[] }).panels.flatMap((panel) => panel.targets.map((t) => t.expr)),
      );
      expect(expressions.length).toBeGreaterThan(0);
      const workerRegistry = new Registry();
      new JobMetrics(workerRegistry);
      const exposition = (await appFor(API_SERVICES).app.inject({ url: '/metrics' })).body + (await workerRegistry.metrics());
      const types = new Map([...exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
      for (const expression of expressions) {
        for (const [name] of expression.matchAll(/photovault_[a-z0-9_]+/g)) {
          const base = name.replace(/_(bucket|count|sum)$/, '');
          const known = types.has(name) || ['histogram', 'summary'].includes(types.get(base) ?? '');
          expect(known, `${name} in ${expression}`).toBe(true);
        }
      }
    });
  });

  // kubectl's own kustomize, where it is installed: the real build, secret generation included.
  const kubectl = (() => {
    try {
      execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();
  // The set-up installs Debian's kubectl (kubernetes-client) where there is none; outside CI a
  // machine without it skips this one check, and says so.
  if (!kubectl && process.env.CI) throw new Error('kubectl is not installed; CI must build the kustomization (./scripts/setup.sh --test).');
  const itWithKubectl = kubectl
    ? it
    : (name: string, test: () => void) => it.skip(`${name} (skipped: kubectl is not installed, and not in CI)`, test);
  itWithKubectl('build with kustomize (kubectl kustomize), secrets from the example', () => {
    const copy = mkdtempSync(join(tmpdir(), 'pv-k3s-build-'));
    try {
      cpSync(K3S_DIR, copy, { recursive: true });
      cpSync(join(copy, 'secrets.env.example'), join(copy, 'secrets.env'));
      const rendered = execFileSync('kubectl', ['kustomize', copy], { encoding: 'utf8' });
      const objects = parseAllDocuments(rendered).map((document) => document.toJS() as { kind: string; metadata: { name: string } });
      const secret = objects.find((object) => object.kind === 'Secret')!;
      expect(secret.metadata.name).toMatch(/^photovault-secrets-[a-z0-9]+$/);
      // Every reference follows the generated name.
      expect(rendered).not.toMatch(/name: photovault-secrets$/m);
      expect(objects.filter((object) => object.kind === 'Deployment' || object.kind === 'StatefulSet')).toHaveLength(workloads.length);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });
});
