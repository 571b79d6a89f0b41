import { PvError } from './errors.js';

/**
 * Path rules for the user's namespace. A path is relative to the user's root, '/'-separated,
 * NFC-normalised, with no empty, '.' or '..' segments; the root itself is ''. Clients on every OS
 * must agree on one spelling of a name, so what the server stores is always the normalised form.
 */

const MAX_SEGMENT_BYTES = 255;
const MAX_PATH_BYTES = 4096;
// C0 controls, DEL and C1 controls: invisible in listings and dangerous in terminals.
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/u;

function invalid(path: string, reason: string): PvError {
  return new PvError('PV_PATH_INVALID', `Invalid path ${JSON.stringify(path)}: ${reason}.`, {
    path,
    fix: "Use a relative path like 'photos/2024/beach.jpg': no leading '/', no '..', no control characters.",
  });
}

/** Normalises a client path to its stored form, or throws PV_PATH_INVALID; '' (root) only if allowRoot. */
export function normalizePath(path: string, options: { allowRoot?: boolean } = {}): string {
  if (typeof path !== 'string') throw invalid(String(path), 'not a string');
  if (path === '') {
    if (options.allowRoot) return '';
    throw invalid(path, 'empty');
  }
  if (CONTROL_CHARS.test(path)) throw invalid(path, 'contains a NUL or control character');
  if (path.startsWith('/') || /^[A-Za-z]:/.test(path)) throw invalid(path, 'absolute paths are not allowed');
  if (path.includes('\\')) throw invalid(path, "backslash is not a separator here; use '/'");
  const normalized = path.normalize('NFC');
  if (Buffer.byteLength(normalized) > MAX_PATH_BYTES) throw invalid(path, `longer than ${MAX_PATH_BYTES} bytes`);
  for (const segment of normalized.split('/')) {
    if (segment === '') throw invalid(path, "empty segment ('//' or a trailing '/')");
    if (segment === '.' || segment === '..') throw invalid(path, `'${segment}' segments are not allowed`);
    if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES) throw invalid(path, `a name is longer than ${MAX_SEGMENT_BYTES} bytes`);
  }
  return normalized;
}

/** The parent folder of a normalised path ('' for top-level names). */
export function parentOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash < 0 ? '' : path.slice(0, slash);
}

/** The last segment of a normalised path. */
export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** Joins a normalised folder ('' for root) and a name. */
export function joinPath(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

/** Every ancestor folder of a normalised path, outermost first, without the root. */
export function ancestorsOf(path: string): string[] {
  const segments = path.split('/');
  return segments.slice(0, -1).map((_, i) => segments.slice(0, i + 1).join('/'));
}

/**
 * The name under which a conflicting version is kept next to the file (DESIGN section 4):
 * `name.conflict-<device>-<yyyymmdd-hhmmss>.ext`, in UTC so every device computes the same name.
 */
export function conflictCopyPath(path: string, device: string, at: Date): string {
  const dir = parentOf(path);
  const name = baseName(path);
  const dot = name.lastIndexOf('.');
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ''];
  const stamp = at.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const safeDevice =
    device
      .normalize('NFC')
      .replace(/[^\p{L}\p{N}_-]+/gu, '_')
      .slice(0, 40) || 'device';
  return joinPath(dir, `${stem}.conflict-${safeDevice}-${stamp}${ext}`);
}
