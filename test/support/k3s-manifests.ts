import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

/**
 * The Kubernetes manifests under k3s/, read as plain objects, and the few facts about them the
 * deployment test needs: which containers run photovault, with what environment and flags, and
 * where Traefik sends a path. Only the shapes the manifests use are typed.
 */
export const K3S_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'k3s');

export interface Metadata {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface ContainerPort {
  name?: string;
  containerPort: number;
}

export interface Probe {
  httpGet?: { path: string; port: string | number };
  tcpSocket?: { port: string | number };
  exec?: { command: string[] };
}

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: { name: string; key: string } };
}

export interface Container {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  ports?: ContainerPort[];
  env?: EnvVar[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  startupProbe?: Probe;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
}

export interface Workload {
  kind: 'Deployment' | 'StatefulSet';
  metadata: Metadata;
  spec: {
    replicas?: number;
    serviceName?: string;
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: { containers: Container[] } };
  };
}

export interface Service {
  kind: 'Service';
  metadata: Metadata;
  spec: { selector: Record<string, string>; ports: { name?: string; port: number; targetPort?: string | number }[] };
}

export interface ConfigMap {
  kind: 'ConfigMap';
  metadata: Metadata;
  data: Record<string, string>;
}

export interface IngressRoute {
  kind: 'IngressRoute';
  metadata: Metadata;
  spec: { routes: { match: string; priority?: number; services: { name: string; port: string | number }[] }[] };
}

export interface SecretGenerator {
  name: string;
  /** One env file: the field every kustomize reads, kubectl 1.20's (Debian's) included. */
  env?: string;
  envs?: string[];
}

export interface Kustomization {
  resources?: string[];
  secretGenerator?: SecretGenerator[];
}

/** The env files a secretGenerator reads its keys from. */
export function envFilesOf(generator: SecretGenerator): string[] {
  return [...(generator.env === undefined ? [] : [generator.env]), ...(generator.envs ?? [])];
}

/** One object of a manifest, with the file it came from (relative to k3s/). */
export type Manifest = { file: string; kind: string; apiVersion: string; metadata: Metadata } & Record<string, unknown>;

/** The objects of some kinds, typed as the manifests write them (the shapes above). */
export function ofKind<T>(manifests: readonly Manifest[], ...kinds: string[]): (T & { file: string })[] {
  return manifests.filter((manifest) => kinds.includes(manifest.kind)) as unknown as (T & { file: string })[];
}

/** Every .yaml file under k3s/, relative to it. */
export function manifestFiles(dir = K3S_DIR): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.yaml') || file.endsWith('.yml'))
    .sort();
}

/** Every object of every manifest (kustomizations apart); throws naming the file on a YAML error. */
export function loadManifests(): Manifest[] {
  const manifests: Manifest[] = [];
  for (const file of manifestFiles()) {
    if (file.endsWith('kustomization.yaml')) continue;
    for (const document of parseAllDocuments(readFileSync(join(K3S_DIR, file), 'utf8'))) {
      if (document.errors.length > 0) throw new Error(`${file}: ${document.errors[0]!.message}`);
      const object = document.toJS() as Manifest | null;
      if (object) manifests.push({ ...object, file });
    }
  }
  return manifests;
}

/** Each kustomization.yaml under k3s/ (path relative to k3s/) with its content. */
export function loadKustomizations(): { file: string; kustomization: Kustomization }[] {
  return manifestFiles()
    .filter((file) => file.endsWith('kustomization.yaml'))
    .map((file) => ({ file, kustomization: parseAllDocuments(readFileSync(join(K3S_DIR, file), 'utf8'))[0]!.toJS() as Kustomization }));
}

/** KEY=value lines of an env file (as kustomize's secretGenerator reads it), comments skipped. */
export function readEnvFile(file: string): Record<string, string> {
  const values: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const equals = line.indexOf('=');
    values[line.slice(0, equals)] = line.slice(equals + 1);
  }
  return values;
}

/**
 * A container's environment as Kubernetes would give it: envFrom ConfigMaps first, then env in
 * order, $(NAME) expanded from the variables before it, secret values from the secrets.
 */
export function containerEnv(
  owner: string,
  container: Container,
  configMaps: ReadonlyMap<string, Record<string, string>>,
  secrets: ReadonlyMap<string, Record<string, string>>,
): Record<string, string> {
  const lookup = (source: ReadonlyMap<string, Record<string, string>>, ref: { name: string; key: string }, what: string) => {
    const value = source.get(ref.name)?.[ref.key];
    if (value === undefined) throw new Error(`${owner}, container ${container.name}: ${what} ${ref.name} has no key ${ref.key}`);
    return value;
  };
  const env: Record<string, string> = {};
  for (const from of container.envFrom ?? []) {
    const name = from.configMapRef?.name ?? from.secretRef?.name;
    const source = from.configMapRef ? configMaps.get(name!) : secrets.get(name!);
    if (!source) throw new Error(`${owner}, container ${container.name}: envFrom names ${name}, which is not defined`);
    Object.assign(env, source);
  }
  for (const variable of container.env ?? []) {
    if (variable.value !== undefined) {
      env[variable.name] = variable.value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name: string) => env[name] ?? whole);
    } else if (variable.valueFrom?.secretKeyRef) {
      env[variable.name] = lookup(secrets, variable.valueFrom.secretKeyRef, 'secret');
    } else if (variable.valueFrom?.configMapKeyRef) {
      env[variable.name] = lookup(configMaps, variable.valueFrom.configMapKeyRef, 'ConfigMap');
    }
  }
  return env;
}

/** The value of a flag in an argument list (`--only thumbnails` or `--only=thumbnails`). */
export function flagValue(args: readonly string[], flag: string): string | undefined {
  const index = args.indexOf(flag);
  if (index >= 0) return args[index + 1];
  return args.find((arg) => arg.startsWith(`${flag}=`))?.slice(flag.length + 1);
}

/** The container port a probe's or Service's port names (by name or number), if the container has it. */
export function findPort(container: Container, port: string | number): ContainerPort | undefined {
  return container.ports?.find((p) => (typeof port === 'number' ? p.containerPort === port : p.name === port));
}

/**
 * Whether a Traefik rule matches a request path. Only the matchers the manifests use are
 * understood: Path and PathPrefix joined by ||; anything else fails the test rather than being
 * guessed at.
 */
export function traefikRuleMatches(rule: string, path: string): boolean {
  return rule.split('||').some((term) => {
    const matcher = /^\s*(Path|PathPrefix)\(`([^`]*)`\)\s*$/.exec(term);
    if (!matcher) throw new Error(`unsupported Traefik matcher in ${JSON.stringify(rule)}: ${JSON.stringify(term.trim())}`);
    return matcher[1] === 'Path' ? path === matcher[2] : path.startsWith(matcher[2]!);
  });
}

/** The Service names of the route Traefik picks for a path: the matching route of highest priority. */
export function traefikServicesFor(routes: IngressRoute['spec']['routes'], path: string): string[] | null {
  const matching = routes.filter((route) => traefikRuleMatches(route.match, path));
  if (matching.length === 0) return null;
  // Without a priority Traefik ranks rules by their length; the manifests give every route one.
  for (const route of matching) if (route.priority === undefined) throw new Error(`route ${route.match} has no priority`);
  const top = Math.max(...matching.map((route) => route.priority!));
  const best = matching.filter((route) => route.priority === top);
  if (best.length > 1) throw new Error(`${path} matches ${best.length} routes of priority ${top}: ${best.map((r) => r.match).join('; ')}`);
  return best[0]!.services.map((service) => service.name);
}
