import { PvError } from './errors.js';
import { type Manifest, type ManifestEntry, readEntry, tooManyChunks, writeEntry } from './manifest.js';
import { ByteReader, ByteWriter } from './varint.js';

/**
 * A new manifest told as edits of a base manifest: runs of base entries it keeps (by position,
 * so reordered runs cost nothing either) and the entries it adds. An edit in a large file keeps
 * all chunks but those around it, so its diff is a few dozen bytes where the manifest is 35 bytes
 * a chunk (56 KB for 100 MiB).
 */
export type ManifestEdit = { copy: { start: number; count: number } } | { add: ManifestEntry[] };
export type ManifestDiff = ManifestEdit[];

/**
 * Where a diff replaced base entries with new ones: the added entries [start, start + count) of
 * the new manifest and the base entries [baseStart, baseStart + baseCount) they took the place
 * of. The replaced bytes are the natural base of a binary delta for the added ones.
 */
export interface ChangedRegion {
  start: number;
  count: number;
  baseStart: number;
  baseCount: number;
}

const FORMAT_V1 = 1;
const COPY = 1;
const ADD = 2;

const sameEntry = (a: ManifestEntry | undefined, b: ManifestEntry | undefined) =>
  a !== undefined && b !== undefined && a.hash === b.hash && a.length === b.length;

/** The edits that turn base into target: greedy runs of base entries, continuing the last run where it can. */
export function diffManifests(base: Manifest, target: Manifest): ManifestDiff {
  const firstAt = new Map<string, number>();
  base.forEach((entry, at) => {
    if (!firstAt.has(entry.hash)) firstAt.set(entry.hash, at);
  });
  const diff: ManifestDiff = [];
  let next = 0;
  for (let i = 0; i < target.length;) {
    const entry = target[i]!;
    const from = sameEntry(base[next], entry) ? next : firstAt.get(entry.hash);
    if (from === undefined || !sameEntry(base[from], entry)) {
      const last = diff.at(-1);
      if (last && 'add' in last) last.add.push(entry);
      else diff.push({ add: [entry] });
      i++;
      continue;
    }
    let count = 1;
    while (sameEntry(base[from + count], target[i + count])) count++;
    diff.push({ copy: { start: from, count } });
    next = from + count;
    i += count;
  }
  return diff;
}

/** The manifest a diff makes of base; throws PV_MANIFEST_INVALID for a diff that does not fit base. */
export function applyManifestDiff(base: Manifest, diff: ManifestDiff, maxEntries: number): Manifest {
  const out: Manifest = [];
  for (const edit of diff) {
    if ('copy' in edit) {
      const { start, count } = edit.copy;
      if (start + count > base.length) throw malformed(`it copies entries ${start}..${start + count} of a base of ${base.length}`);
      for (let at = start; at < start + count; at++) out.push(base[at]!);
    } else {
      out.push(...edit.add);
    }
    if (out.length > maxEntries) throw tooManyChunks(maxEntries);
  }
  return out;
}

/** The regions of a diff where added entries replaced base entries (or were inserted between two). */
export function changedRegions(diff: ManifestDiff, baseLength: number): ChangedRegion[] {
  const regions: ChangedRegion[] = [];
  let position = 0;
  let baseEnd = 0;
  diff.forEach((edit, at) => {
    if ('copy' in edit) {
      position += edit.copy.count;
      baseEnd = edit.copy.start + edit.copy.count;
      return;
    }
    const following = diff[at + 1];
    const nextBase = following && 'copy' in following ? following.copy.start : baseLength;
    regions.push({ start: position, count: edit.add.length, baseStart: baseEnd, baseCount: Math.max(0, nextBase - baseEnd) });
    position += edit.add.length;
  });
  return regions;
}

/** Encodes a diff: a format byte, then per edit a tag and either a run (start, count) or the added entries. */
export function encodeManifestDiff(diff: ManifestDiff): Buffer {
  const out = new ByteWriter();
  out.byte(FORMAT_V1);
  for (const edit of diff) {
    if ('copy' in edit) {
      out.byte(COPY).varint(edit.copy.start).varint(edit.copy.count);
    } else {
      out.byte(ADD).varint(edit.add.length);
      for (const entry of edit.add) writeEntry(out, entry);
    }
  }
  return out.finish();
}

/** Decodes a diff, refusing one that describes more than maxEntries entries. */
export function decodeManifestDiff(bytes: Uint8Array, maxEntries: number): ManifestDiff {
  const reader = new ByteReader(bytes, malformed);
  if (reader.byte() !== FORMAT_V1) throw malformed('unknown format byte');
  const diff: ManifestDiff = [];
  let entries = 0;
  while (!reader.done) {
    const tag = reader.byte();
    if (tag === COPY) {
      const start = reader.varint();
      const count = reader.varint();
      if (count === 0) throw malformed('an empty run');
      diff.push({ copy: { start, count } });
      entries += count;
    } else if (tag === ADD) {
      const count = reader.varint();
      // Bound the count before allocating: each entry takes at least 33 bytes.
      if (count === 0 || count * 33 > reader.remaining) throw malformed('an entry count past the end');
      const add: ManifestEntry[] = [];
      for (let i = 0; i < count; i++) add.push(readEntry(reader));
      diff.push({ add });
      entries += count;
    } else {
      throw malformed(`unknown edit ${tag}`);
    }
    if (entries > maxEntries) throw tooManyChunks(maxEntries);
  }
  return diff;
}

function malformed(reason: string): PvError {
  return new PvError('PV_MANIFEST_INVALID', `Malformed manifest diff: ${reason}.`, {
    fix: 'Send the diff as produced by encodeManifestDiff against the base version named in baseVersionId.',
  });
}
