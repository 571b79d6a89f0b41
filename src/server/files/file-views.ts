import type { FileEntry, FileVersionView, TrashEntry } from '../../core/protocol.js';
import type { FileRow, FileVersionRow, TrashRow } from '../../infra/db/schema.js';

/** The API's view of a live file or folder. */
export function toFileEntry(row: FileRow): FileEntry {
  return {
    path: row.dir === '' ? row.name : `${row.dir}/${row.name}`,
    name: row.name,
    kind: row.kind,
    size: row.size,
    contentHash: row.content_hash,
    versionId: row.head_version_id,
    mtime: row.mtime,
    updatedAt: new Date(row.updated_at).toISOString(),
  };
}

/** The API's view of one version of a file. */
export function toVersionView(row: FileVersionRow): FileVersionView {
  return {
    id: row.id,
    contentHash: row.content_hash,
    size: row.size,
    mtime: row.mtime,
    createdAt: new Date(row.created_at).toISOString(),
    deviceId: row.device_id,
  };
}

/** The API's view of a trash entry. */
export function toTrashEntry(row: TrashRow): TrashEntry {
  return { id: row.id, path: row.path, kind: row.kind, size: row.size, deletedAt: new Date(row.deleted_at).toISOString() };
}
